"""The dashboard's curated-tables panel in a real Chromium, over real Iceberg tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from stages.common import aws
from stages.common.config import Settings
from stages.etl.tables import NAMESPACE, PROCESSED_BUCKET
from tests.dashboard.helpers import DashboardProcess
from tests.support.browser import open_page, save_screenshot
from tests.support.processes import start_emulator
from tests.support.tables import FilledLake, fill_tables

XSS_NAME = '<img src=x onerror="window.__xss=1">'
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def tables_dashboard(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, FilledLake]]:
    logs = tmp_path_factory.mktemp("logs")
    emulator, endpoint = start_emulator(logs)
    dashboard = None
    try:
        settings = Settings(aws_endpoint_url=endpoint)
        lake = fill_tables(settings, count=1500, bad_lines=(b"{not json",))
        # A catalog entry whose name is markup and whose metadata file does not exist: the
        # panel shows both as text, in the row of that entry.
        aws.client("glue", settings).create_table(
            DatabaseName=NAMESPACE,
            TableInput={
                "Name": XSS_NAME,
                "Parameters": {
                    "table_type": "ICEBERG",
                    "metadata_location": f"s3://{PROCESSED_BUCKET}/{XSS_NAME}.metadata.json",
                },
            },
        )
        dashboard = DashboardProcess(endpoint, Path(logs))
        dashboard.wait_healthy(60)
        yield dashboard.url, lake
    finally:
        if dashboard is not None:
            dashboard.stop()
        emulator.stop()


def test_the_tables_panel_shows_each_table_from_its_metadata(
    browser: Browser, tables_dashboard: tuple[str, FilledLake]
) -> None:
    url, lake = tables_dashboard
    typed = lake.typed
    with open_page(browser) as (page, errors):
        page.goto(url)
        expect(page.locator("#refreshed-at")).not_to_have_text("never", timeout=TIMEOUT_MS)
        panel = page.locator("#tables")
        expect(panel.locator("table")).to_be_visible()
        for name, kind in (("logs", "log"), ("metrics", "metric"), ("apm", "apm")):
            row = panel.locator(f'tr[data-table="{name}"]')
            expect(row.locator("td.rows")).to_have_attribute(
                "data-count", str(typed.tables[kind].num_rows)
            )
            expect(row.locator("td.table-name")).to_have_text(f"{NAMESPACE}.{name}")
            # Newest event time and last commit, each with its age.
            expect(row.locator("td.freshness")).to_contain_text("2026-03-01T")
            expect(row.locator("td.commit")).to_contain_text(" ago)")
        expect(panel.locator('tr[data-table="quarantine"] td.rows')).to_have_attribute(
            "data-count", "1"
        )
        expect(page.locator("#tables-meta")).to_contain_text("quarantined rows: 1")

        broken = panel.locator("tr", has_text=XSS_NAME)
        expect(broken).to_have_count(1)
        expect(broken.locator("td").last).not_to_have_text("")
        assert panel.locator("img").count() == 0
        assert page.evaluate("typeof window.__xss") == "undefined"
        save_screenshot(page, "dashboard-tables")
        assert errors.all() == []

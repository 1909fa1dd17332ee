"""The operator's path through both pages, against a whole private fleet: generation started and
a cpu_spike triggered in the control panel show up in the dashboard's counts, prefix tree and
log viewer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, Page, expect

from stages.common import aws
from stages.common.config import Settings
from tests.ops.support import FleetRun, private_fleet
from tests.support.browser import open_page, save_screenshot

TIMEOUT_MS = 60_000
PLAYWRIGHT_DEFAULT_MS = 5_000
VIEWER_LINES = 50


@pytest.fixture(autouse=True)
def patient_assertions() -> Iterator[None]:
    # The whole fleet shares 2 cores with other test runs.
    expect.set_options(timeout=TIMEOUT_MS)
    yield
    expect.set_options(timeout=PLAYWRIGHT_DEFAULT_MS)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:
    run = private_fleet(
        tmp_path_factory.mktemp("ui-flow"),
        DASHBOARD_REFRESH_SECONDS="2",
        DASHBOARD_CACHE_SECONDS="1",
        DASHBOARD_SAMPLE_SECONDS="1",
    )
    started = run.cli("start", timeout=240)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield run
    finally:
        run.stop_all()


def _bucket_count(page: Page, bucket: str) -> int:
    cell = page.locator(f'#bucket-summary tr[data-bucket="{bucket}"] td.objects')
    expect(cell).to_have_attribute("data-count", re.compile(r"^\d+$"))
    return int(cell.get_attribute("data-count") or "0")


def _object_with_anomalies(s3: Any, bucket: str) -> tuple[str, int] | None:
    """The first object whose first lines hold anomalous records, and how many they are."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="service=")
    for page in pages:
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            head = body.splitlines()[:VIEWER_LINES]
            anomalous = sum(1 for line in head if orjson.loads(line).get("is_anomaly") is True)
            if anomalous:
                return item["Key"], anomalous
    return None


def _wait_for_anomalous_object(page: Page, s3: Any, bucket: str) -> tuple[str, int]:
    for _ in range(120):
        found = _object_with_anomalies(s3, bucket)
        if found:
            return found
        page.wait_for_timeout(1000)
    raise AssertionError(f"no object with anomalous records reached {bucket}")


def test_generation_and_a_cpu_spike_from_the_panel_reach_the_dashboard(
    browser: Browser, fleet: FleetRun
) -> None:
    s3 = aws.client("s3", Settings(aws_endpoint_url=f"http://127.0.0.1:{fleet.emulator_port}"))
    with open_page(browser) as (panel, panel_errors), open_page(browser) as (board, board_errors):
        panel.set_default_timeout(TIMEOUT_MS)
        board.set_default_timeout(TIMEOUT_MS)
        board.goto(fleet.url("dashboard") + "/")
        expect(board.locator("#refreshed-at")).not_to_have_text("never")
        before = _bucket_count(board, "md-raw-logs")

        # Control panel: start continuous generation, then a cpu_spike.
        panel.goto(fleet.url("scenario-orchestrator") + "/")
        panel.fill("#interval_seconds", "1")
        panel.fill("#logs_per_interval", "20")
        panel.fill("#duration_seconds", "300")
        panel.fill("#anomaly_rate", "0")
        panel.click("#continuous-start")
        expect(panel.locator("#messages .message.ok").first).to_contain_text(
            "Continuous generation started"
        )
        panel.click('button[data-anomaly="cpu_spike"]')
        expect(panel.locator("#messages .message.ok").first).to_contain_text(
            "cpu_spike window opened"
        )
        save_screenshot(panel, "ui-flow-control-panel")

        # Dashboard: the count grows on its own refresh.
        board.wait_for_function(
            """([bucket, n]) => {
                const cell = document.querySelector(
                    `#bucket-summary tr[data-bucket="${bucket}"] td.objects`);
                return cell && Number(cell.dataset.count) > n;
            }""",
            arg=["md-raw-logs", before],
        )

        # S3 browser: down the prefix tree to an object holding anomalous records.
        key, anomalous = _wait_for_anomalous_object(board, s3, "md-raw-logs")
        board.select_option("#browser-page-size", "1000")
        board.select_option("#browser-bucket", "md-raw-logs")
        parts = key.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth]) + "/"
            board.locator(f'#s3-browser button.prefix[data-prefix="{prefix}"]').click()
            expect(board.locator("#browser-listing")).to_have_attribute("data-prefix", prefix)
            expect(board.locator("#browser-path button.crumb").last).to_have_text(parts[depth - 1])
        _open_object(board, key)

        # Log viewer: its first lines, the anomalous ones highlighted.
        records = board.locator("#log-viewer pre.record")
        expect(records.first).to_be_visible()
        assert 0 < records.count() <= VIEWER_LINES
        expect(board.locator("#log-viewer pre.record.anomalous")).to_have_count(anomalous)
        expect(board.locator("#log-viewer pre.record.anomalous").first).to_contain_text(
            '"is_anomaly": true'
        )
        save_screenshot(board, "ui-flow-dashboard")

        panel.click("#continuous-stop")
        expect(panel.locator("#messages .message.ok").first).to_contain_text("stopped after")
        assert panel_errors.all() == []
        assert board_errors.all() == []


def _open_object(page: Page, key: str) -> None:
    """Click the object, paging forward through its folder when it is not on this page."""
    button = page.locator(f'#s3-browser button.object[data-key="{key}"]')
    number = 1
    while button.count() == 0:
        expect(page.locator("#browser-next")).to_be_enabled()
        page.locator("#browser-next").click()
        number += 1
        expect(page.locator("#browser-listing")).to_have_attribute("data-page", str(number))
    button.click()

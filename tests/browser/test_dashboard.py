"""The dashboard page in a real Chromium, against the real dashboard process and emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from stages.common import aws
from stages.common.config import Settings
from tests.dashboard.helpers import DashboardProcess, jsonl, log_record, put_objects
from tests.support.browser import open_page, save_screenshot
from tests.support.processes import free_port, start_emulator

MANY = 5_000
XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_SERVICE = f"{XSS_IMG}{XSS_SCRIPT}"
# A key's partition value cannot hold the "/" of "</script>": the key carries the <img> only.
XSS_PARTITION = XSS_IMG
XSS_HOUR = "year=2026/month=11/day=27/hour=06"
XSS_PREFIX = f"service={XSS_PARTITION}/{XSS_HOUR}/"
XSS_KEY = f"{XSS_PREFIX}part-{XSS_IMG}.jsonl"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("logs")
    emulator, endpoint = start_emulator(logs)
    dashboard = None
    try:
        s3 = aws.client("s3", Settings(aws_endpoint_url=endpoint))
        put_objects(s3, "md-processed", [(f"batch/obj-{i:05d}.json", b"{}") for i in range(MANY)])
        records = [
            log_record(0, service=XSS_SERVICE, message=XSS_IMG),
            log_record(1, service=XSS_SERVICE, message=XSS_SCRIPT, anomalous=True),
            log_record(2, message="an ordinary line"),
        ]
        s3.put_object(Bucket="md-raw-logs", Key=XSS_KEY, Body=jsonl(records))
        dashboard = DashboardProcess(endpoint, Path(logs))
        dashboard.wait_healthy(60)
        yield dashboard.url
    finally:
        if dashboard is not None:
            dashboard.stop()
        emulator.stop()


def _open(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#refreshed-at")).not_to_have_text("never", timeout=TIMEOUT_MS)


def test_the_page_loads_cleanly_with_every_panel(browser: Browser, dashboard_url: str) -> None:
    with open_page(browser) as (page, errors):
        _open(page, dashboard_url)
        for panel in ("#streams", "#bucket-summary", "#consumer-status", "#partitions"):
            expect(page.locator(f"{panel} table")).to_be_visible()
        expect(page.locator("#streams")).to_contain_text("stage01-logs-stream")
        expect(page.locator("#streams")).to_contain_text("ACTIVE")
        # No consumer runs in this test: the panel says so instead of "running".
        expect(page.locator("#consumer-status .state")).to_have_text("unreachable")
        expect(page.locator("#throughput-chart canvas")).to_have_count(1)
        expect(page.locator("#lag-chart canvas")).to_have_count(1)
        save_screenshot(page, "dashboard")
        assert errors.all() == []


def test_exact_counts_and_paging_through_5000_objects(browser: Browser, dashboard_url: str) -> None:
    with open_page(browser) as (page, errors):
        _open(page, dashboard_url)
        count = page.locator('#bucket-summary tr[data-bucket="md-processed"] td.objects')
        expect(count).to_have_text("5,000")

        page.select_option("#browser-page-size", "1000")
        page.select_option("#browser-bucket", "md-processed")
        page.locator('#s3-browser button.prefix[data-prefix="batch/"]').click()
        keys: list[str] = []
        for number in range(1, 6):
            # A page of 1,000 keys can take several seconds on a loaded 2-core machine.
            expect(page.locator("#browser-page")).to_have_text(f"page {number}", timeout=20_000)
            objects = page.locator("#s3-browser button.object")
            expect(objects).to_have_count(1000, timeout=20_000)
            keys.extend(objects.evaluate_all("nodes => nodes.map(n => n.dataset.key)"))
            if number < 5:
                page.locator("#browser-next").click()
        expect(page.locator("#browser-next")).to_be_disabled()
        assert keys == [f"batch/obj-{i:05d}.json" for i in range(MANY)]

        page.locator("#browser-prev").click()
        expect(page.locator("#browser-page")).to_have_text("page 4")
        expect(page.locator("#s3-browser button.object").first).to_have_attribute(
            "data-key", "batch/obj-03000.json"
        )
        save_screenshot(page, "dashboard-5000-objects")
        assert errors.all() == []


def test_markup_in_records_and_keys_is_shown_as_text_everywhere(
    browser: Browser, dashboard_url: str
) -> None:
    with open_page(browser) as (page, errors):
        _open(page, dashboard_url)
        # Partitions: the service name is text.
        expect(page.locator("#partitions td.service")).to_have_text(XSS_PARTITION)

        # S3 browser: down the prefix tree to the object, every level a text label.
        for level in (
            f"service={XSS_PARTITION}/",
            "year=2026/",
            "month=11/",
            "day=27/",
            "hour=06/",
        ):
            button = page.locator("#s3-browser button.prefix").filter(has_text=level)
            expect(button).to_have_text(level)
            button.click()
        obj = page.locator("#s3-browser button.object")
        expect(obj).to_have_text(f"part-{XSS_IMG}.jsonl")
        obj.click()

        # Log viewer: the records' markup is printed, and the anomalous one is highlighted.
        records = page.locator("#log-viewer pre.record")
        expect(records).to_have_count(3)
        expect(records.nth(0)).to_contain_text(XSS_IMG.replace('"', '\\"'))
        expect(records.nth(1)).to_contain_text(XSS_SCRIPT)
        expect(records.nth(1)).to_have_class("record anomalous")
        expect(page.locator("#log-viewer pre.anomalous")).to_have_count(1)
        expect(page.locator("#viewer-key")).to_have_text(f"md-raw-logs/{XSS_KEY}")

        assert page.locator("main img, main script").count() == 0
        assert page.evaluate("typeof window.__xss") == "undefined"
        save_screenshot(page, "dashboard-untrusted-text")
        assert errors.all() == []


def test_when_aws_is_down_every_panel_says_so(browser: Browser, tmp_path: Path) -> None:
    dead_endpoint = f"http://127.0.0.1:{free_port()}"
    dashboard = DashboardProcess(dead_endpoint, tmp_path)
    try:
        dashboard.wait_healthy(60)
        with open_page(browser) as (page, errors):
            _open(page, dashboard.url)
            expect(page.locator("#consumer-status .state")).to_have_text("unreachable")
            expect(page.locator("#streams tbody tr")).to_have_count(3)
            expect(page.locator("#streams tbody")).to_contain_text("unavailable")
            expect(page.locator('#bucket-summary tr[data-bucket="md-raw-logs"]')).to_contain_text(
                "Could not connect"
            )
            for panel in ("#s3-browser", "#partitions"):
                message = page.locator(f"{panel} .error")
                expect(message).to_be_visible()
                expect(message).to_contain_text("503")
            save_screenshot(page, "dashboard-aws-down")
            # The only console errors are the browser's notes of the 503 answers themselves.
            assert errors.uncaught == []
            assert all("status of 503" in message for message in errors.console), errors.console
    finally:
        dashboard.stop()

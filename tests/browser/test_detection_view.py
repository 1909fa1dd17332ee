"""The detection view in a real headless Chromium, against real processes: the emulator, a real
``python -m stages.detection`` and a stand-in orchestrator (uvicorn) serving one ground-truth
window. Features rows, two events (one open) and a scoreboard are written by the test as the ETL,
the detection loop and ``python -m benchmarks.detection --publish`` would write them."""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, expect

from stages.common import aws
from stages.common.config import Settings
from stages.detection.store import EventStore, event_document
from stages.detection.view import PUBLISH_HINT, SCOREBOARD_KEY
from stages.etl.features import ensure_features_table
from stages.etl.tables import open_catalog
from tests.detection.view_support import WIDTH, FakeOrchestrator, feature_rows, window
from tests.support.browser import open_page, save_screenshot
from tests.support.processes import Process, base_env, free_port, start_emulator, wait_http_ok

SERVICE = "payment-service"
QUIET = "auth-service"
SERIES = "cpu=metric:cpu.utilization:mean,latency=metric:latency.p95:mean"
BUCKETS = 180  # the last half hour
XSS = '<img src=x onerror="window.__xss=1">'
TIMEOUT_MS = 30_000
# Chromium logs a fetch answered 404 as a console error: the page asks for the scoreboard, which
# the second half of the test has deleted on purpose.
SCOREBOARD_404 = re.compile(r"Failed to load resource: .* status of 404")

SCOREBOARD = {
    "seed": 42,
    "generated_at": "2026-12-04T10:00:00Z",
    "days": {
        "learn": 2,
        "test": 1,
        "normal_only": 1,
        "start": "2026-11-30T00:00:00+00:00",
        "resolution_seconds": 10,
    },
    "targets": {"precision": 0.9, "recall": 0.9},
    "met": True,
    "overall": {
        "precision": 0.94,
        "recall": 0.92,
        "f1": 0.93,
        "ttd_p50_s": 40.0,
        "ttd_p90_s": 80.0,
        "false_alarms_per_service_day": 0.5,
        "windows": 30,
        "events": 29,
    },
    "per_type": [
        {
            "anomaly_type": "cpu_spike",
            "observable": True,
            "windows": 5,
            "detected": 5,
            "recall": 1.0,
            "precision": 1.0,
            "ttd_p50_s": 30.0,
        },
        {
            "anomaly_type": XSS,
            "observable": True,
            "windows": 2,
            "detected": 1,
            "recall": 0.5,
            "precision": 1.0,
            "ttd_p50_s": None,
        },
    ],
    "per_detector": [
        {"detector": "robust_z", "precision": 0.7, "recall": 0.8, "f1": 0.75},
        {"detector": "ensemble", "precision": 0.94, "recall": 0.92, "f1": 0.93},
    ],
    "invisible": [{"anomaly_type": "payment_fraud", "reason": "no feature carries it"}],
    "windows": [
        {
            "anomaly_type": "cpu_spike",
            "scenario_id": "infra-cpu-spike-payment",
            "services": ["payment-service"],
            "start": "2026-12-02T10:00:00+00:00",
            "end": "2026-12-02T10:05:00+00:00",
            "intensity": 80.0,
            "observable": True,
            "outlying_buckets": 12,
            "detected": True,
            "ttd_s": 30.0,
        }
    ],
}


@dataclass
class View:
    url: str
    settings: Settings
    orchestrator: FakeOrchestrator
    start: datetime  # the first bucket
    open_id: str
    closed_id: str


def _event(
    start: datetime, first: int, last: int, state: str, signals: list[str]
) -> dict[str, Any]:
    begin = (start + timedelta(seconds=first * WIDTH)).timestamp()
    end = (start + timedelta(seconds=last * WIDTH)).timestamp()
    return {
        "id": f"{SERVICE}@{round(begin * 1000)}",
        "signals": signals,
        "start": begin,
        "end": end,
        "peak_score": 0.87,
        "peak_at": begin + WIDTH,
        "voters": ["iqr", "robust_z"],
        "severity": "high",
        "state": state,
        "points": last - first + 1,
    }


@pytest.fixture(scope="module")
def detection_view(tmp_path_factory: pytest.TempPathFactory) -> Iterator[View]:
    logs = tmp_path_factory.mktemp("detection-view")
    emulator, endpoint = start_emulator(logs)
    now = math.floor(time.time() / WIDTH) * WIDTH
    start = datetime.fromtimestamp(now - BUCKETS * WIDTH, UTC)
    truth = window(
        "gt-1",
        SERVICE,
        start + timedelta(seconds=100 * WIDTH),
        start + timedelta(seconds=120 * WIDTH),
        scenario_id=f"scenario {XSS}",
    )
    orchestrator = FakeOrchestrator([truth])
    detection = None
    try:
        settings = Settings(aws_endpoint_url=endpoint)
        table = ensure_features_table(open_catalog(settings, name="writer"))
        table.append(feature_rows((SERVICE, QUIET), start, BUCKETS))
        s3 = aws.client("s3", settings)
        events = EventStore(s3, "md-models")
        closed = _event(start, 40, 50, "closed", ["cpu"])
        still_open = _event(start, 150, 175, "open", ["cpu", XSS])
        for event in (closed, still_open):
            events.put(event_document(SERVICE, event))
        s3.put_object(Bucket="md-models", Key=SCOREBOARD_KEY, Body=orjson.dumps(SCOREBOARD))

        port = free_port()
        env = base_env(
            endpoint,
            DETECTION_PORT=str(port),
            DETECTION_SERIES=SERIES,
            DETECTION_INTERVAL_SECONDS="3600",
            ORCHESTRATOR_PORT=str(orchestrator.port),
            RUN_DIR=str(logs / "run"),
            DATA_DIR=str(logs / "data"),
        )
        detection = Process("detection-view", [sys.executable, "-m", "stages.detection"], env, logs)
        wait_http_ok(f"http://127.0.0.1:{port}/health", detection, timeout=60)
        yield View(
            f"http://127.0.0.1:{port}",
            settings,
            orchestrator,
            start,
            still_open["id"],
            closed["id"],
        )
    finally:
        if detection is not None:
            detection.stop()
        orchestrator.stop()
        emulator.stop()


@pytest.fixture(autouse=True)
def patient_assertions() -> Iterator[None]:
    # Other test runs share the 2 cores: give expect() as long as page actions get.
    expect.set_options(timeout=TIMEOUT_MS)
    yield
    expect.set_options(timeout=5_000)


def test_signals_events_ground_truth_and_scoreboard(browser: Browser, detection_view: View) -> None:
    url = detection_view.url
    with open_page(browser) as (page, errors):
        page.goto(url)
        expect(page.locator("body[data-refreshed]")).to_have_count(1)
        expect(page.locator("#service")).to_have_value(QUIET)  # services in name order
        page.select_option("#service", SERVICE)
        page.select_option("#range", "3600")

        # One chart per configured series, each with its canvas, and the bands drawn over it.
        charts = page.locator("#charts .chart")
        expect(charts).to_have_count(2)
        expect(page.locator('#charts .chart[data-series="cpu"] canvas').first).to_be_visible()
        expect(page.locator('#charts .chart[data-series="latency"] canvas').first).to_be_visible()
        expect(page.locator("#range-label")).to_contain_text(SERVICE)
        # What the detection process lists for the service: the two events written, and any the
        # process found itself in the normal data (none is expected).
        listed = httpx.get(f"{url}/api/anomalies", params={"service": SERVICE}).json()
        assert {detection_view.open_id, detection_view.closed_id} <= {e["id"] for e in listed}
        for chart in ("cpu", "latency"):
            box = page.locator(f'#charts .chart[data-series="{chart}"]')
            expect(box).to_have_attribute("data-event-bands", str(len(listed)))
            expect(box).to_have_attribute("data-truth-bands", "1")
            expect(box).to_have_attribute("data-points", str(BUCKETS))

        # The legend of bands: the ground-truth window with its type, the events.
        truth = page.locator("#bands tr.band.truth")
        expect(truth).to_have_count(1)
        expect(truth).to_contain_text("cpu_spike")
        expect(truth).to_contain_text(f"scenario {XSS}")
        expect(page.locator("#bands tr.band.event")).to_have_count(len(listed))
        expect(page.locator("#bands tr.band.event").filter(has_text="open")).to_have_count(1)
        expect(page.locator("#truth-status")).to_have_text(
            "1 ground-truth window(s) in this range."
        )

        # Hovering inside the ground-truth window names it (the plot area is uPlot's .u-over).
        over = page.locator('#charts .chart[data-series="cpu"] .u-over')
        box = over.bounding_box()
        assert box is not None
        end = detection_view.start.timestamp() + BUCKETS * WIDTH
        middle = detection_view.start.timestamp() + 110 * WIDTH
        fraction = (middle - (end - 3600)) / 3600
        page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
        expect(page.locator("#hover")).to_contain_text("ground truth: cpu_spike")

        # The open events: one row, with its severity, start, signals as text and a JSON link.
        row = page.locator("#open-events tr.open-event")
        expect(row).to_have_count(1)
        expect(row).to_have_attribute("data-event-id", detection_view.open_id)
        expect(row).to_contain_text("high")
        expect(row).to_contain_text(f"cpu, {XSS}")
        expect(row).to_contain_text("0.870")
        link = row.locator("a")
        expect(link).to_have_attribute(
            "href", f"/api/anomalies/{quote(detection_view.open_id, safe='')}"
        )
        linked = httpx.get(f"{url}{link.get_attribute('href')}")
        assert linked.status_code == 200 and linked.json()["state"] == "open"

        # The detection loop's counters, as the generic status page showed them.
        expect(page.locator("#loop-status")).to_contain_text("open events 1")
        expect(page.locator('#counters tr[data-counter="points_scored"]')).to_have_count(1)

        # The scoreboard as tables.
        expect(page.locator("#scoreboard-overall")).to_contain_text("false_alarms_per_service_day")
        per_type = page.locator("#scoreboard-per-type tbody tr")
        expect(per_type).to_have_count(2)
        expect(per_type.nth(0)).to_contain_text("cpu_spike")
        expect(per_type.nth(1)).to_contain_text(XSS)
        expect(page.locator("#scoreboard-per-detector tbody tr")).to_have_count(2)
        expect(page.locator("#scoreboard-invisible")).to_contain_text("no feature carries it")
        expect(page.locator("#scoreboard-windows tbody tr")).to_have_count(1)
        expect(page.locator("#scoreboard-windows")).to_contain_text("infra-cpu-spike-payment")
        expect(page.locator("#scoreboard")).to_contain_text("learn 2, test 1, normal_only 1")

        assert page.locator("main img, main script").count() == 0
        assert page.evaluate("typeof window.__xss") == "undefined"
        save_screenshot(page, "detection-view")
        assert errors.all() == []

        # The orchestrator goes away and the scoreboard is withdrawn: the page says so and
        # still draws the signals and the events.
        detection_view.orchestrator.stop()
        aws.client("s3", detection_view.settings).delete_object(
            Bucket="md-models", Key=SCOREBOARD_KEY
        )
        page.locator("#refresh").click()
        expect(page.locator("#truth-status")).to_contain_text("ground truth unavailable")
        expect(page.locator("#scoreboard")).to_have_text(PUBLISH_HINT)
        expect(charts).to_have_count(2)
        for chart in ("cpu", "latency"):
            box_ = page.locator(f'#charts .chart[data-series="{chart}"]')
            expect(box_).to_have_attribute("data-truth-bands", "0")
            expect(box_).to_have_attribute("data-event-bands", str(len(listed)))
        expect(page.locator("#bands tr.band.truth")).to_have_count(0)
        expect(page.locator("#hover")).to_have_text("")
        save_screenshot(page, "detection-view-no-ground-truth")
        assert errors.uncaught == []
        assert all(SCOREBOARD_404.search(m) for m in errors.console), errors.console

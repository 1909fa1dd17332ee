"""Detection reads a features commit at once: the watch sees the Glue entry of
``telemetry.features`` move, and the service scores the new buckets long before its interval."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from prometheus_client import REGISTRY

from stages.common import aws
from stages.common.config import Settings
from stages.common.lakehouse import open_catalog
from stages.detection import metrics as detection_metrics
from stages.detection import wake
from stages.detection.wake import FeaturesWatch
from stages.etl.features import ensure_features_table
from tests.detection.support import metric_rows
from tests.support.processes import Process, base_env, free_port, wait_http_ok

WIDTH = 10
START = 1_796_000_000 - 1_796_000_000 % 3600  # an hour's start


def _rows(first: int, last: int) -> pa.Table:
    return metric_rows(
        [
            ("svc-a", "cpu.utilization", datetime.fromtimestamp(START + i * WIDTH, UTC), 40.0)
            for i in range(first, last)
        ],
        WIDTH,
    )


def test_the_watch_fires_once_per_commit(settings: Settings) -> None:
    fired: list[int] = []
    watch = FeaturesWatch(aws.client("glue", settings), lambda: fired.append(1), every=0.1)
    # No table yet: nothing to compare with, nothing fired.
    assert watch.check() is False and watch.last is None
    table = ensure_features_table(open_catalog(settings, name="test"))
    assert watch.check() is False and watch.last is not None  # the first reading
    table.append(_rows(0, 3))
    assert watch.check() is True and fired == [1]
    assert watch.check() is False and fired == [1]
    table.append(_rows(3, 6))
    table.append(_rows(6, 9))
    assert watch.check() is True and fired == [1, 1] and watch.commits_seen == 2


def test_a_commit_is_scored_long_before_the_interval(endpoint: str, proc_logs: Path) -> None:
    settings = Settings(aws_endpoint_url=endpoint)
    table = ensure_features_table(open_catalog(settings, name="test"))
    table.append(_rows(0, 40))
    port = free_port()
    env = base_env(
        endpoint,
        DETECTION_PORT=str(port),
        # Only the first round would come from the interval within this test.
        DETECTION_INTERVAL_SECONDS="600",
        DETECTION_WAKE_POLL_SECONDS="0.2",
        DETECTION_SERIES="cpu=metric:cpu.utilization:mean",
        RUN_DIR=str(proc_logs / "run"),
        DATA_DIR=str(proc_logs / "data"),
    )
    proc = Process("detection-wake", [sys.executable, "-m", "stages.detection"], env, proc_logs)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/health", proc, timeout=60)

        def scored() -> int:
            status = httpx.get(f"{url}/api/status", timeout=5).json()
            return int(status["counters"]["points_scored"])

        deadline = time.monotonic() + 60
        while scored() < 40:
            assert time.monotonic() < deadline and proc.alive(), proc.log_tail()
            time.sleep(0.2)
        time.sleep(1.0)  # the first round is over; the next would be 600 s away
        appended = time.monotonic()
        table.append(_rows(40, 45))
        while scored() < 45:
            # Far less than the 600 s interval: the wake did it (generous for a loaded machine).
            assert time.monotonic() - appended < 60 and proc.alive(), proc.log_tail()
            time.sleep(0.2)
        assert scored() == 45
        # A watch that reads the catalog fine counts no failure.
        scrape = httpx.get(f"{url}/metrics", timeout=5).text
        assert "\ndetection_wake_errors_total 0.0\n" in scrape
    finally:
        proc.stop()


def test_a_failing_watch_warns_rate_limited_and_counts_on_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A catalog that refuses connections: nothing listens on this port.
    dead = Settings(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    now = [1000.0]
    counters = detection_metrics.counters()
    before = _metric("detection_wake_errors_total")
    watch = FeaturesWatch(
        aws.client("glue", dead), lambda: None, every=1.0, counters=counters, clock=lambda: now[0]
    )
    caplog.set_level(logging.DEBUG, logger="stages.detection.wake")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    for _ in range(5):  # five polls within a minute: one warning
        watch.poll()
        now[0] += 1.0
    assert len(warnings()) == 1
    assert "cannot read the Glue entry of telemetry.features" in warnings()[0]
    assert "1 failures in all" in warnings()[0]
    now[0] += wake.WARN_EVERY_SECONDS
    watch.poll()  # a minute later the failure is reported again, with the count since
    assert len(warnings()) == 2
    assert "6 failures in all, 5 since the last warning" in warnings()[1]
    assert watch.errors == 6 and counters.snapshot()["wake_errors"] == 6
    assert _metric("detection_wake_errors_total") - before == 6


def test_a_watch_that_recovers_says_so_and_warns_again_at_the_next_failure(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Settings(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    now = [0.0]
    watch = FeaturesWatch(aws.client("glue", dead), lambda: None, every=1.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="stages.detection.wake")
    watch.poll()
    watch.glue = aws.client("glue", settings)  # the catalog is back
    watch.poll()
    assert any("answers again" in r.getMessage() for r in caplog.records)
    watch.glue = aws.client("glue", dead)
    now[0] += 1.0  # well within a minute of the first warning: a new outage is still reported
    watch.poll()
    assert [r.levelno for r in caplog.records].count(logging.WARNING) == 2


def _metric(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return 0.0 if value is None else value

"""The consumer panel and the stream lag come from the real consumer, never from a guess."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stages.common import aws
from stages.common.config import Settings
from tests.dashboard.helpers import DashboardProcess
from tests.support.lake import ConsumerProcess, make_record, put_plain


def _eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_consumer_state_lag_checkpoints_and_throughput_come_from_the_consumer(
    lake_endpoint: str, module_logs: Path
) -> None:
    consumer = ConsumerProcess(lake_endpoint, module_logs, FLUSH_MAX_AGE_SECONDS="0.5")
    dashboard = DashboardProcess(
        lake_endpoint,
        module_logs,
        CONSUMER_PORT=str(consumer.port),
        DASHBOARD_SAMPLE_SECONDS="0.5",
        DASHBOARD_CACHE_SECONDS="0",
    )
    try:
        consumer.wait_healthy(60)
        dashboard.wait_healthy(60)
        kinesis = aws.client("kinesis", Settings(aws_endpoint_url=lake_endpoint))
        put_plain(kinesis, "stage01-logs-stream", [make_record(i) for i in range(400)])

        status = _eventually(
            lambda: (
                (s := dashboard.json("/api/consumer"))["state"] == "running"
                and s["health"]["records_out"] >= 400
                and s
            )
        )
        assert status, dashboard.json("/api/consumer")
        assert len(status["health"]["owned_shards"]) == 4  # 2 + 1 + 1 shards

        logs = dashboard.json("/api/streams/stage01-logs-stream")
        assert logs["status"] == "ACTIVE"
        shards = {s["shard_id"]: s for s in logs["shards"]}
        assert len(shards) == 2
        for shard in shards.values():
            assert shard["millis_behind_latest"] is not None  # the consumer's own gauge
            assert shard["lease_owner"] == status["health"]["worker_id"]
        assert any(s["checkpoint"] not in (None, "TRIM_HORIZON") for s in shards.values())

        series = dashboard.json("/api/timeseries")
        rates = [r for r in series["records_in_per_s"]["stage01-logs-stream"] if r is not None]
        assert rates and sum(rates) > 0
        bucket = dashboard.json("/api/buckets/md-raw-logs")
        assert bucket["objects"] >= 1

        consumer.stop()
        down = _eventually(lambda: dashboard.json("/api/consumer")["state"] == "unreachable")
        assert down, dashboard.json("/api/consumer")
    finally:
        consumer.stop()
        dashboard.stop()

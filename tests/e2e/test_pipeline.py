"""The whole fleet, started as a user starts it, with data flowing end to end.

Orchestrator -> synthesis -> ingestion -> Kinesis -> consumer -> S3, on private ports and a
private RUN_DIR/DATA_DIR, checked the way an engineer would check a run: what the Ingestion
Interface accepted is exactly what is in the lake, by event_id, per kind.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stages.common import aws, estate
from stages.common.config import Settings
from tests.ops.support import FleetRun, private_fleet
from tests.support.lake import read_bucket

BUCKETS = {"log": "md-raw-logs", "metric": "md-raw-metrics", "apm": "md-raw-apm"}


class Fleet:
    def __init__(self, run: FleetRun, data_dir: Path) -> None:
        self.run = run
        self.data_dir = data_dir
        self.settings = Settings(aws_endpoint_url=f"http://127.0.0.1:{run.emulator_port}")

    def url(self, service: str) -> str:
        return self.run.url(service)

    def get(self, service: str, path: str) -> Any:
        resp = httpx.get(self.url(service) + path, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def post(self, service: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url(service) + path, json=body, timeout=30)


@pytest.fixture(scope="module")
def running_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    run = private_fleet(root)
    started = run.cli("start", timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield Fleet(run, root / "data")
    finally:
        run.cli("stop", "--timeout", "30")


def accepted_event_ids(data_dir: Path) -> dict[str, set[str]]:
    """What the Ingestion Interface accepted, from its category files (anomaly/ holds copies)."""
    ids: dict[str, set[str]] = {kind: set() for kind in BUCKETS}
    for path in (data_dir / "categories").rglob("*.jsonl"):
        if path.parent.name == "anomaly":
            continue
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)
            ids[record["kind"]].add(record["event_id"])
    return ids


def wait_for_continuous_to_finish(fleet_: Fleet, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = fleet_.get("scenario-orchestrator", "/api/continuous/stats")
        if not stats["running"]:
            return stats
        time.sleep(0.5)
    raise AssertionError(f"continuous generation still running after {timeout}s")


def wait_for_lake(fleet_: Fleet, expected: dict[str, set[str]], timeout: float) -> dict:
    s3 = aws.client("s3", fleet_.settings)
    deadline = time.monotonic() + timeout
    while True:
        lines = {kind: read_bucket(s3, bucket) for kind, bucket in BUCKETS.items()}
        counts = {kind: len(lines[kind]) for kind in BUCKETS}
        if all(counts[kind] >= len(expected[kind]) for kind in BUCKETS):
            return lines
        if time.monotonic() > deadline:
            want = {kind: len(ids) for kind, ids in expected.items()}
            raise AssertionError(f"lake has {counts}, ingestion accepted {want}")
        time.sleep(1)


def test_a_generation_run_fills_the_lake_with_exactly_what_was_accepted(
    running_fleet: Fleet,
) -> None:
    fleet_ = running_fleet
    started = fleet_.post(
        "scenario-orchestrator",
        "/api/continuous/start",
        {"interval_seconds": 0.5, "logs_per_interval": 100, "duration_seconds": 8, "seed": 7},
    )
    assert started.status_code in (200, 201), started.text
    time.sleep(2)
    trigger = fleet_.post(
        "scenario-orchestrator",
        "/api/anomaly/trigger",
        {"anomaly_type": "cpu_spike", "intensity": 90, "duration_seconds": 3},
    )
    assert trigger.status_code in (200, 201), trigger.text
    stats = wait_for_continuous_to_finish(fleet_, timeout=60)
    # 100 records every 0.5 s for 8 s, and synthesis forwarded every one of them.
    assert stats["records_produced"] == stats["records_requested"] >= 1500
    assert stats["records_failed"] == 0

    accepted = accepted_event_ids(fleet_.data_dir)
    assert all(accepted[kind] for kind in BUCKETS), {k: len(v) for k, v in accepted.items()}
    lines = wait_for_lake(fleet_, accepted, timeout=60)

    for kind, bucket_lines in lines.items():
        ids = Counter(line.record["event_id"] for line in bucket_lines)
        duplicated = [i for i, n in ids.items() if n > 1]
        assert not duplicated, f"{kind}: {len(duplicated)} duplicated event_ids"
        assert set(ids) == accepted[kind], f"{kind}: lake and ingestion disagree"
        for line in bucket_lines:
            service = line.key.split("/", 1)[0].removeprefix("service=")
            assert service in estate.SERVICE_NAMES, line.key
            assert line.record["kind"] == kind

    anomalous = [
        line.record
        for bucket_lines in lines.values()
        for line in bucket_lines
        if line.record.get("anomaly_type") == "cpu_spike"
    ]
    assert anomalous and all(record["is_anomaly"] for record in anomalous)
    windows = fleet_.get("scenario-orchestrator", "/api/ground-truth")["items"]
    assert any(w["anomaly_type"] == "cpu_spike" for w in windows)

    counters = fleet_.get("ingestion-interface", "/api/metrics")["counters"]
    assert sum(len(ids) for ids in accepted.values()) == counters["accepted"]
    assert stats["records_produced"] == counters["accepted"]

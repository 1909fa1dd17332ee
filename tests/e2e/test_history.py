"""History on demand through the real fleet: two past hours at 10 s for one service with three
anomaly windows, from the orchestrator's API to the lake, checked record by record against the
ground truth."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from stages.common import aws
from stages.common.config import Settings
from stages.orchestrator.scenario_catalogue import ScenarioCatalogue
from tests.ops.support import FleetRun, private_fleet
from tests.orchestrator.scope_check import label_errors
from tests.support.lake import lake_records

BUCKETS = {"log": "md-raw-logs", "metric": "md-raw-metrics", "apm": "md-raw-apm"}
SERVICE = "payment-service"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:
    run = private_fleet(tmp_path_factory.mktemp("history-fleet"))
    started = run.cli("start", timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield run
    finally:
        run.cli("stop", "--timeout", "30")


def _scenarios(*anomaly_types: str) -> list[str]:
    catalogue = ScenarioCatalogue()
    return [
        next(s.id for s in catalogue.for_type(t) if s.target.primary_service == SERVICE)
        for t in anomaly_types
    ]


def _wait_for_run(orch: str, run_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{orch}/api/history/{run_id}", timeout=10).json()
        if run["status"] != "running":
            return run
        time.sleep(0.5)
    raise AssertionError(f"history still running after {timeout}s: {run}")


def _wait_for_lake(settings: Settings, expected: int, timeout: float) -> list[dict[str, Any]]:
    s3 = aws.client("s3", settings)
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for bucket in BUCKETS.values() for line in lake_records(s3, bucket)]
        if len(lines) >= expected or time.monotonic() > deadline:
            return [line.record | {"key": line.key} for line in lines]
        time.sleep(1)


def test_two_past_hours_land_in_their_partitions_labelled_like_the_ground_truth(
    fleet: FleetRun,
) -> None:
    orch = fleet.url("scenario-orchestrator")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=2)
    scenarios = _scenarios("cpu_spike", "memory_leak", "db_pool_exhaustion")
    schedule = [
        {"scenario_id": sid, "start": (start + timedelta(minutes=10 + 35 * i)).isoformat(),
         "duration_s": 600, "intensity": 90}
        for i, sid in enumerate(scenarios)
    ]  # fmt: skip
    body = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "resolution_seconds": 10,
        "services": [SERVICE],
        "seed": 11,
        "anomalies": {"schedule": schedule},
    }
    resp = httpx.post(f"{orch}/api/history", json=body, timeout=30)
    assert resp.status_code == 202, resp.text
    run = _wait_for_run(orch, resp.json()["id"], timeout=120)
    assert run["status"] == "completed", run
    assert run["records_failed"] == 0
    assert run["records_accepted"] == run["records_planned"] > 15_000

    settings = Settings(aws_endpoint_url=f"http://127.0.0.1:{fleet.emulator_port}")
    records = _wait_for_lake(settings, run["records_accepted"], timeout=60)
    ids = Counter(r["event_id"] for r in records)
    assert len(ids) == len(records) == run["records_accepted"], "lost or duplicated records"

    # event times spread over the range, every 10 s step of every metric series present,
    # each record in the partition of its own (past) hour
    assert all(_stamp(start) <= r["timestamp"] < _stamp(end) for r in records)
    metrics = [r for r in records if r["kind"] == "metric"]
    steps = {r["timestamp"] for r in metrics}
    assert len(steps) == 720
    per_series = Counter(r["metric_name"] for r in metrics)
    assert set(per_series.values()) == {720}
    hours = {"/".join(r["key"].split("/")[1:5]) for r in records}
    expected_hours = {
        (start + timedelta(hours=h)).strftime("year=%Y/month=%m/day=%d/hour=%H") for h in (0, 1)
    }
    assert hours == expected_hours

    # the ground truth lists the three windows at their event times, and the labels agree
    windows = [
        w
        for w in httpx.get(f"{orch}/api/ground-truth", timeout=10).json()["items"]
        if w["source"] == f"history:{run['id']}"
    ]
    assert [(w["scenario_id"], w["start"], w["end"]) for w in windows] == [
        (
            item["scenario_id"],
            _stamp(datetime.fromisoformat(item["start"])),
            _stamp(datetime.fromisoformat(item["start"]) + timedelta(seconds=600)),
        )
        for item in schedule
    ]
    errors = label_errors(windows, records)
    assert not errors, f"{len(errors)} label errors, e.g. {errors[:5]}"
    for window in windows:
        labelled = [r for r in records if r["scenario_id"] == window["scenario_id"]]
        assert any(r["kind"] == "metric" for r in labelled), window["scenario_id"]
        assert any(r["kind"] == "log" for r in labelled), window["scenario_id"]

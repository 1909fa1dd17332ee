"""Ground-truth windows: the API, the JSONL file, their scopes and the planning horizon."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stages.orchestrator.errors import TooManyOpenWindows
from stages.orchestrator.ground_truth import (
    MAX_OPEN_WINDOWS,
    GroundTruth,
    Window,
    ramp_seconds,
    scope_for,
)
from stages.orchestrator.scenario_catalogue import Scenario, ScenarioCatalogue
from tests.orchestrator.helpers import wait_for_execution
from tests.orchestrator.stubs import Peers


def test_windows_are_listed_and_written_as_jsonl(client: TestClient, tmp_path: Path) -> None:
    resp = client.post(
        "/api/scenarios/database_slow--payments-db/execute",
        json={"duration_seconds": 1, "intensity": 80, "rate": 4},
    )
    wait_for_execution(client, resp.json()["id"])
    page = client.get("/api/ground-truth").json()
    assert page["total"] == 1
    window = page["items"][0]
    assert window["scenario_id"] == "database_slow--payments-db"
    assert window["anomaly_type"] == "database_slow"
    assert window["services"] == ["payment-service"]
    assert window["metrics"] == ["db.query.duration", "latency.p95"]
    assert window["log_types"] == ["database_query_log", "slow_query_log", "service_request_log"]
    assert window["scope"] == {
        "logs": {name: ["payment-service"] for name in window["log_types"]},
        "metrics": {name: ["payment-service"] for name in window["metrics"]},
        "apm": ["payment-service"],
        "hosts": [],
    }
    assert window["target_entity"] == "payments-db"
    assert window["intensity"] == 80 and window["ramp_seconds"] == 1.0
    assert window["end"] is not None

    # Relative to the data directory: the answer never shows the server's file system.
    assert page["jsonl_path"] == "ground_truth.jsonl"
    path = tmp_path / "data" / page["jsonl_path"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["opened", "closed"]
    assert lines[0]["end"] is None and lines[1]["end"] == window["end"]
    assert {line["id"] for line in lines} == {window["id"]}

    assert client.get("/api/ground-truth", params={"open": True}).json()["total"] == 0
    assert client.get("/api/ground-truth", params={"limit": 0}).status_code == 422


def test_scope_takes_each_log_type_from_the_target_services_that_emit_it(
    client: TestClient, peers: Peers
) -> None:
    peers.log_types = [
        {"name": "payment_transaction_log", "services": ["payment-service"]},
        {"name": "fraud_score_log", "services": ["fraud-detection"]},
        {"name": "card_fraud_alert_log", "services": ["fraud-detection", "notification-service"]},
    ]
    resp = client.post(
        "/api/anomaly/trigger",
        json={
            "anomaly_type": "payment_fraud",
            "target": "account-via-payment-service",
            "duration_seconds": 1,
            "rate": 4,
        },
    )
    window = resp.json()["window"]
    # the target (payment-service) emits payment logs; the fraud logs come from their first
    # emitter; metrics and spans from the target
    assert window["scope"] == {
        "logs": {
            "payment_transaction_log": ["payment-service"],
            "fraud_score_log": ["fraud-detection"],
            "card_fraud_alert_log": ["fraud-detection"],
        },
        "metrics": {"payment.amount": ["payment-service"], "fraud.score": ["payment-service"]},
        "apm": ["payment-service"],
        "hosts": [],
    }
    assert window["services"] == ["payment-service", "fraud-detection"]
    client.post(f"/api/executions/{resp.json()['execution']['id']}/stop")
    assert peers.synthesize and all(
        r["anomaly"]["scope"] == window["scope"] for r in peers.synthesize
    )  # synthesis is told exactly what the window covers


def test_host_scenarios_pin_their_host() -> None:
    scenario = _scenario("disk_full--payment-2")
    scope = scope_for(scenario, {"disk_usage_log": ("api-gateway", "payment-service")})
    assert scope.hosts == ("payment-2",)
    assert dict(scope.logs)["disk_usage_log"] == ("payment-service",)


def _scenario(scenario_id: str) -> Scenario:
    scenario = ScenarioCatalogue().get(scenario_id)
    assert scenario is not None, scenario_id
    return scenario


def _open(truth: GroundTruth, scenario_id: str, start: datetime, seconds: float = 60) -> Window:
    scenario = _scenario(scenario_id)
    return truth.open_window(
        scenario,
        intensity=90,
        duration_seconds=seconds,
        source="trigger",
        start=start,
        scope=scope_for(scenario, {}),
    )


def test_planned_records_see_every_window_they_can_fall_in(tmp_path: Path) -> None:
    truth = GroundTruth(tmp_path / "gt.jsonl")
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    early = _open(truth, "cpu_spike--payment-service", t0, seconds=5)
    truth.close_window(early.id, t0 + timedelta(seconds=5))
    # a closed window still overlaps records planned late for its time range
    assert [w.id for w in truth.plan(t0 + timedelta(seconds=4), t0 + timedelta(seconds=8))] == [
        early.id
    ]
    # records are now planned up to t0+8: a window opened "at t0+6" starts at t0+8, where the
    # planned records end, so none of them lies in it unlabelled
    late = _open(truth, "memory_leak--auth-service", t0 + timedelta(seconds=6))
    assert late.start == t0 + timedelta(seconds=8)
    assert truth.plan(t0 + timedelta(seconds=8), t0 + timedelta(seconds=9))[-1].id == late.id
    # closing before the horizon (t0+9) would leave labelled records outside the window
    closed = truth.close_window(late.id, t0 + timedelta(seconds=8.5))
    assert closed is not None and closed.end == t0 + timedelta(seconds=9)
    assert truth.close_window(late.id) is None  # closing twice writes nothing
    assert len((tmp_path / "gt.jsonl").read_text().splitlines()) == 4


def test_window_bounds_are_whole_milliseconds_like_record_timestamps(tmp_path: Path) -> None:
    truth = GroundTruth(tmp_path / "gt.jsonl")
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    truth.plan(t0, t0 + timedelta(microseconds=1_250_400))
    # a record planned at t0+1.2504 s is stamped ...01.250Z: the window must start after it
    window = _open(truth, "cpu_spike--payment-service", t0, seconds=0.0001)
    assert window.start == t0 + timedelta(milliseconds=1251)
    assert window.planned_end == t0 + timedelta(milliseconds=1252)


def test_open_windows_are_bounded(tmp_path: Path) -> None:
    truth = GroundTruth(tmp_path / "gt.jsonl")
    now = datetime.now(UTC)
    for _ in range(MAX_OPEN_WINDOWS):
        _open(truth, "cpu_spike--payment-service", now)
    with pytest.raises(TooManyOpenWindows):
        _open(truth, "cpu_spike--payment-service", now)
    assert len(truth.active()) == MAX_OPEN_WINDOWS


def test_expired_windows_close_at_their_planned_end(tmp_path: Path) -> None:
    truth = GroundTruth(tmp_path / "gt.jsonl")
    scenario = ScenarioCatalogue().get("memory_leak--auth-service")
    assert scenario is not None
    start = (datetime.now(UTC) - timedelta(seconds=120)).replace(microsecond=0)
    window = truth.open_window(
        scenario,
        intensity=50,
        duration_seconds=30,
        source="trigger",
        start=start,
        scope=scope_for(scenario, {}),
    )
    assert [w.id for w in truth.close_expired()] == [window.id]
    assert truth.list()[0].end == start + timedelta(seconds=30)


def test_ramp_follows_the_leading_shape() -> None:
    assert ramp_seconds("ramp", 120) == 120
    assert ramp_seconds("gaussian_spike", 60) == 30
    assert ramp_seconds("step", 60) == 0

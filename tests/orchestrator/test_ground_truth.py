"""Ground-truth windows: the API, the JSONL file, and which records fall inside a window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from stages.common.records import format_timestamp
from stages.orchestrator.catalogue import ScenarioCatalogue
from stages.orchestrator.ground_truth import GroundTruth, label_for, ramp_seconds
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
    assert window["target_entity"] == "payments-db"
    assert window["intensity"] == 80 and window["ramp_seconds"] == 1.0
    assert window["end"] is not None

    path = Path(page["jsonl_path"])
    assert path == tmp_path / "data" / "ground_truth.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["opened", "closed"]
    assert lines[0]["end"] is None and lines[1]["end"] == window["end"]
    assert {line["id"] for line in lines} == {window["id"]}

    assert client.get("/api/ground-truth", params={"open": True}).json()["total"] == 0
    assert client.get("/api/ground-truth", params={"limit": 0}).status_code == 422


def test_window_names_every_service_that_emits_the_scenario_log_types(
    client: TestClient, peers: Peers
) -> None:
    peers.log_types = [
        {"name": "fraud_score_log", "services": ["fraud-detection"]},
        {"name": "card_fraud_alert_log", "services": ["fraud-detection", "notification-service"]},
        {"name": "cdn_log", "services": ["api-gateway"]},
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
    assert window["services"] == [
        "payment-service", "fraud-detection", "notification-service",
    ]  # fmt: skip
    client.post(f"/api/executions/{resp.json()['execution']['id']}/stop")
    assert all(
        r["services"] == window["services"] for r in peers.synthesize
    )  # the execution asks synthesis for records from all of them


def test_records_inside_a_window_by_time_and_service(tmp_path: Path) -> None:
    truth = GroundTruth(tmp_path / "gt.jsonl")
    scenario = ScenarioCatalogue().get("cpu_spike--payment-service")
    assert scenario is not None
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    window = truth.open_window(
        scenario, intensity=90, duration_seconds=60, source="trigger", start=start
    )
    windows = truth.list()
    inside = format_timestamp(start + timedelta(seconds=30))
    after = format_timestamp(start + timedelta(seconds=61))
    before = format_timestamp(start - timedelta(seconds=1))
    assert label_for(windows, inside, "payment-service") == window
    assert label_for(windows, inside, "auth-service") is None
    assert label_for(windows, after, "payment-service") is None
    assert label_for(windows, before, "payment-service") is None

    closed = truth.close_window(window.id, start + timedelta(seconds=10))
    assert closed is not None and closed.end == start + timedelta(seconds=10)
    assert label_for(truth.list(), inside, "payment-service") is None
    assert truth.close_window(window.id) is None  # closing twice writes nothing
    assert len((tmp_path / "gt.jsonl").read_text().splitlines()) == 2


def test_expired_windows_close_at_their_planned_end(tmp_path: Path) -> None:
    truth = GroundTruth(tmp_path / "gt.jsonl")
    scenario = ScenarioCatalogue().get("memory_leak--auth-service")
    assert scenario is not None
    start = datetime.now(UTC) - timedelta(seconds=120)
    window = truth.open_window(
        scenario, intensity=50, duration_seconds=30, source="trigger", start=start
    )
    assert [w.id for w in truth.close_expired()] == [window.id]
    assert truth.list()[0].end == start + timedelta(seconds=30)


def test_ramp_follows_the_leading_shape() -> None:
    assert ramp_seconds("ramp", 120) == 120
    assert ramp_seconds("gaussian_spike", 60) == 30
    assert ramp_seconds("step", 60) == 0

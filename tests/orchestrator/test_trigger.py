"""Manual anomaly triggers, folded into the running generator or run as a short execution."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stages.common.vocabulary import ARCHETYPES, INFRASTRUCTURE_TYPES, SEED_TYPES
from tests.orchestrator.helpers import wait_for_execution, wait_until
from tests.orchestrator.stubs import Peers


def test_unknown_type_is_422_listing_the_valid_ones(client: TestClient) -> None:
    resp = client.post("/api/anomaly/trigger", json={"anomaly_type": "alien_invasion"})
    assert resp.status_code == 422
    body = resp.json()
    assert "alien_invasion" in body["message"]
    assert set(SEED_TYPES) | set(INFRASTRUCTURE_TYPES) <= set(body["detail"]["valid"])
    assert client.get("/api/ground-truth").json()["total"] == 0


def test_unknown_target_is_422_listing_the_valid_ones(client: TestClient) -> None:
    resp = client.post(
        "/api/anomaly/trigger", json={"anomaly_type": "cpu_spike", "target": "../etc"}
    )
    assert resp.status_code == 422
    assert "payment-service" in resp.json()["detail"]["valid"]
    bad = client.post("/api/anomaly/trigger", json={"anomaly_type": "cpu_spike", "intensity": 101})
    assert bad.status_code == 422


def test_without_a_generator_the_trigger_runs_a_short_execution(
    client: TestClient, peers: Peers
) -> None:
    resp = client.post(
        "/api/anomaly/trigger",
        json={"anomaly_type": "cpu_spike", "intensity": 90, "duration_seconds": 1,
              "target": "payment-service"},
    )  # fmt: skip
    assert resp.status_code == 200
    body = resp.json()
    assert body["mode"] == "execution"
    assert body["window"]["scenario_id"] == "cpu_spike--payment-service"
    assert body["window"]["intensity"] == 90
    done = wait_for_execution(client, body["execution"]["id"])
    assert done["logs_generated"] == 20 == peers.produced()
    assert all(r["anomaly"]["anomaly_type"] == "cpu_spike" for r in peers.synthesize)


def test_every_anomaly_type_folds_into_the_generator(client: TestClient, peers: Peers) -> None:
    client.post("/api/continuous/start", json={"interval_seconds": 0.2, "logs_per_interval": 100})
    types = tuple(archetype.anomaly_type for archetype in ARCHETYPES)
    assert set(SEED_TYPES) | set(INFRASTRUCTURE_TYPES) <= set(types)
    for anomaly_type in types:
        resp = client.post(
            "/api/anomaly/trigger",
            json={"anomaly_type": anomaly_type, "intensity": 90, "duration_seconds": 60},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["mode"] == "continuous" and resp.json()["execution"] is None

    def all_types_seen() -> bool:
        with peers.lock:
            seen = {r["anomaly"]["anomaly_type"] for r in peers.synthesize if "anomaly" in r}
        return seen == set(types)

    wait_until(all_types_seen, timeout=15)
    active = client.get("/api/continuous/stats").json()["active_anomalies"]
    assert {w["anomaly_type"] for w in active} == set(types)
    stopped = client.post("/api/continuous/stop").json()
    assert stopped["active_anomalies"] == []
    windows = client.get("/api/ground-truth").json()["items"]
    assert len(windows) == len(types) and all(w["end"] for w in windows)
    # auth_failure locked an account through the State Manager.
    assert any(body["to"] == "locked" for _, body in peers.transitions)

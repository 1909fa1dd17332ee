"""Executions against stub synthesis and State Manager servers (real HTTP)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from stages.common.config import Settings
from stages.orchestrator.app import create_app
from tests.orchestrator.helpers import wait_for_execution
from tests.orchestrator.stubs import Peers


def test_auth_failure_locks_an_account_and_produces_anomalous_records(
    client: TestClient, peers: Peers
) -> None:
    resp = client.post(
        "/api/scenarios/auth_failure--account-via-api-gateway/execute",
        json={"duration_seconds": 1, "intensity": 90, "rate": 40},
    )
    assert resp.status_code == 201
    started = resp.json()
    assert started["status"] == "running"
    effect = started["state_effect"]
    assert effect["outcome"] == "applied" and effect["to_state"] == "locked"
    locked = effect["entity_id"]
    assert peers.entities[locked]["state"] == "locked"
    assert peers.transitions[0][0] == locked and peers.transitions[0][1]["to"] == "locked"
    assert started["target_entity"] == locked

    done = wait_for_execution(client, started["id"])
    assert done["status"] == "completed"
    assert done["logs_generated"] == 40 == peers.produced()
    assert done["records_requested"] == 40 and done["records_failed"] == 0
    for request in peers.synthesize:
        assert request["anomaly"]["anomaly_type"] == "auth_failure"
        assert request["anomaly"]["scenario_id"] == "auth_failure--account-via-api-gateway"
        assert request["anomaly"]["intensity"] == 90
        assert request["anomaly"]["target_entity"] == locked
        assert request["anomaly"]["target_service"] == "api-gateway"
        assert request["services"] == ["api-gateway", "auth-service"]
        assert request["anomalous_share"] == 0.7
        assert request["forward"] is True and request["return_records"] is False

    window = client.get("/api/ground-truth").json()["items"][0]
    assert window["id"] == done["window_id"] and window["end"] is not None
    assert window["target_entity"] == locked


def test_rate_is_spread_over_the_duration(client: TestClient, peers: Peers) -> None:
    posted = time.monotonic()
    resp = client.post(
        "/api/scenarios/cpu_spike--payment-service/execute",
        json={"duration_seconds": 2, "rate": 100},
    )
    done = wait_for_execution(client, resp.json()["id"])
    assert done["logs_generated"] == 200
    times = [r["received_at"] for r in peers.synthesize]
    assert len(times) == 8  # one call per 0.25 s tick
    # Not bursted: the last tick's call is not made before it is due, 1.75 s after the start
    # (measured from the request, as a loaded machine may make the first call late too), and
    # not paced slower than asked either.
    assert times[-1] - posted >= 1.7
    assert times[-1] - times[0] <= 3.0
    assert Counter(r["count"] for r in peers.synthesize) == {25: 8}
    assert peers.transitions == [("payment-service", peers.transitions[0][1])]
    assert peers.entities["payment-service"]["state"] == "degraded"


def test_stop_ends_the_execution_and_its_window_early(client: TestClient, peers: Peers) -> None:
    started = client.post(
        "/api/scenarios/memory_leak--ledger-service/execute",
        json={"duration_seconds": 60, "rate": 20},
    ).json()
    stopped = client.post(f"/api/executions/{started['id']}/stop")
    assert stopped.status_code == 200
    body = stopped.json()
    assert body["status"] == "stopped" and body["ended_at"] < body["ends_at"]
    assert body["logs_generated"] == peers.produced()
    window = client.get("/api/ground-truth").json()["items"][0]
    assert window["end"] is not None and window["end"] < window["planned_end"]
    listed = client.get("/api/executions", params={"status": "stopped"}).json()
    assert [e["id"] for e in listed["items"]] == [started["id"]]


def test_invalid_transition_is_reported_not_hidden(client: TestClient, peers: Peers) -> None:
    for entity in peers.entities.values():
        if entity["type"] == "account":
            entity["state"] = "closed"
    resp = client.post(
        "/api/scenarios/payment_fraud--account-via-payment-service/execute",
        json={"duration_seconds": 1, "rate": 4},
    )
    assert resp.status_code == 201
    effect = resp.json()["state_effect"]
    assert effect["outcome"] == "rejected"
    assert effect["detail"]["detail"]["allowed"] == []
    client.post(f"/api/executions/{resp.json()['id']}/stop")


@pytest.mark.parametrize(
    "answer",
    [
        "fail_next",  # 503: ingestion did not take the records in time
        "conflict_next",  # 409: an earlier attempt under the key is still running
    ],
)
def test_synthesis_503_or_409_is_retried_and_nothing_is_lost(
    client: TestClient, peers: Peers, answer: str
) -> None:
    setattr(peers, answer, 1)
    resp = client.post(
        "/api/scenarios/api_errors--api-gateway/execute",
        json={"duration_seconds": 1, "rate": 20},
    )
    done = wait_for_execution(client, resp.json()["id"])
    assert done["synthesis_retries"] == 1
    assert done["logs_generated"] == 20 == peers.produced()
    assert done["records_failed"] == 0


def test_partial_forward_is_counted_and_only_the_rest_retried(
    client: TestClient, peers: Peers
) -> None:
    peers.partial_forward = [7]
    resp = client.post(
        "/api/scenarios/cpu_spike--auth-service/execute",
        json={"duration_seconds": 1, "rate": 40},
    )
    done = wait_for_execution(client, resp.json()["id"])
    assert [r["count"] for r in peers.synthesize[:2]] == [7, 3]  # 10 asked, 7 got through
    assert peers.synthesize[0]["partial_of"] == 10
    # the retry is the same request under the same key; synthesis makes only the missing 3
    first, retry = peers.synthesize[:2]
    assert first["key"] and retry["key"] == first["key"]
    assert peers.synthesize[2]["key"] != first["key"]  # the next tick is a new request
    assert done["logs_generated"] == 40 == peers.produced()
    assert done["synthesis_retries"] == 1 and done["records_failed"] == 0


def test_records_ingestion_rejected_are_not_retried_and_what_got_in_counts(
    client: TestClient, peers: Peers
) -> None:
    peers.reject_after = 4  # of the first tick's 10
    resp = client.post(
        "/api/scenarios/cpu_spike--auth-service/execute",
        json={"duration_seconds": 1, "rate": 40},
    )
    done = wait_for_execution(client, resp.json()["id"])
    assert done["synthesis_retries"] == 0  # the same records would be refused again
    assert done["logs_generated"] == 34 == peers.produced()
    assert done["records_failed"] == 6
    assert done["last_error"].startswith("ingestion_rejected")


def test_unreachable_synthesis_is_counted_as_failed(peers: Peers, settings: Settings) -> None:
    dead = settings.model_copy(update={"synthesis_port": 1})
    with TestClient(create_app(dead)) as client:
        resp = client.post(
            "/api/scenarios/disk_full--payment-1/execute",
            json={"duration_seconds": 1, "rate": 4},
        )
        client.post(f"/api/executions/{resp.json()['id']}/stop")
        body = client.get(f"/api/executions/{resp.json()['id']}").json()
        metrics = client.get("/metrics").text
    assert body["logs_generated"] == 0
    assert body["records_failed"] == body["records_requested"] > 0
    assert body["last_error"].startswith("unreachable")
    assert 'orchestrator_records_failed_total{reason="unreachable",source="execution"}' in metrics


def test_bad_requests_are_4xx(client: TestClient) -> None:
    url = "/api/scenarios/cpu_spike--api-gateway/execute"
    assert client.post("/api/scenarios/nope/execute", json={}).status_code == 404
    for body in (
        {"intensity": 101},
        {"duration_seconds": 0},
        {"duration_seconds": 3601},
        {"rate": 5001},
        {"rate": 0},
        {"speed": 3},
    ):
        resp = client.post(url, json=body)
        assert resp.status_code == 422, body
    assert client.get("/api/executions/nope").status_code == 404
    assert client.post("/api/executions/nope/stop").status_code == 404
    assert client.get("/api/executions", params={"status": "weird"}).status_code == 422


def test_same_seed_same_execution_requests(client: TestClient, peers: Peers) -> None:
    runs = []
    for _ in range(2):
        peers.synthesize.clear()
        resp = client.post(
            "/api/scenarios/gc_pressure--user-service/execute",
            json={"duration_seconds": 1, "rate": 30, "seed": 11},
        )
        wait_for_execution(client, resp.json()["id"])
        runs.append([(r["count"], r["seed"], r["services"]) for r in peers.synthesize])
    assert runs[0] == runs[1]
    assert [count for count, _, _ in runs[0]] == [7, 8, 7, 8]  # 30/s in 0.25 s steps
    assert len({seed for _, seed, _ in runs[0]}) == 4

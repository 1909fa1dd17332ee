"""The HTTP API through TestClient: catalogue, synthesize, bad input, token, health."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from stages.common.config import Settings, get_settings
from stages.common.records import Record
from stages.common.vocabulary import LOG_TYPE_CATEGORIES, LOG_TYPES
from stages.synthesis.app import create_app
from tests.support.processes import free_port
from tests.synthesis.helpers import anomaly


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    # nothing listens on these ports: the State Manager is "unreachable", forwarding is off
    settings = Settings(state_port=free_port(), ingestion_port=free_port())
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def test_log_types_catalogue(client: TestClient) -> None:
    listed = client.get("/api/log-types").json()
    assert {t["name"] for t in listed} == set(LOG_TYPES)
    gateway = next(t for t in listed if t["name"] == "api_gateway_log")
    assert gateway["kind"] == "log" and gateway["category"] == "application"
    assert gateway["services"] == ["api-gateway"]
    assert {"http.method", "http.route", "http.status_code", "duration_ms", "client.ip"} <= set(
        gateway["fields"]
    )
    assert set(gateway["anomalous_fields"]) == {"http.status_code", "duration_ms"}
    assert "api_errors" in gateway["anomaly_types"]
    security = client.get("/api/log-types", params={"category": "security"}).json()
    assert {t["name"] for t in security} == set(LOG_TYPE_CATEGORIES["security"])
    bad = client.get("/api/log-types", params={"category": "<script>"})
    assert bad.status_code == 422 and "security" in bad.json()["detail"]["valid"]


def test_synthesize_returns_valid_records(client: TestClient) -> None:
    resp = client.post("/api/synthesize", json={"count": 300, "seed": 1})
    assert resp.status_code == 200
    body = resp.json()
    assert body["count"] == 300 and body["forwarded"] == 0 and body["anomalous"] == 0
    for record in body["records"]:
        Record.model_validate(record)
    assert {r["kind"] for r in body["records"]} == {"log", "metric", "apm"}


def test_synthesize_with_anomaly_and_filters(client: TestClient) -> None:
    resp = client.post(
        "/api/synthesize",
        json={
            "count": 100,
            "seed": 2,
            "kinds": ["log"],
            "services": ["payment-service"],
            "timestamp": "2026-03-02T10:05:00Z",
            "anomaly": anomaly("payment_fraud", target_entity="acc-777"),
            "anomalous_share": 0.5,
            "return_records": True,
        },
    )
    assert resp.status_code == 200
    records = resp.json()["records"]
    normal = [r for r in records if not r["is_anomaly"]]
    odd = [r for r in records if r["is_anomaly"]]
    # half drawn from the anomaly, plus the background logs that fall in its scope
    assert len(odd) >= 50
    assert {r["service"] for r in normal} == {"payment-service"}
    assert not [r for r in normal if r["log_type"] == "payment_transaction_log"]
    payments = [r for r in odd if r["log_type"] == "payment_transaction_log"]
    assert payments and {r["attributes"]["account.id"] for r in payments} == {"acc-777"}
    assert all(r["scenario_id"] == "test-payment_fraud" for r in odd)


def test_return_records_false_still_counts(client: TestClient) -> None:
    body = client.post("/api/synthesize", json={"count": 10, "return_records": False}).json()
    assert body["count"] == 10 and body["records"] == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"count": 0}, "count"),
        ({"count": 6000}, "count"),
        ({"count": 5, "colour": "red"}, "colour"),
        ({"count": 5, "log_types": ["../../etc/x"]}, "../../etc/x"),
        ({"count": 5, "services": ["nope-service"]}, "nope-service"),
        ({"count": 5, "kinds": ["trace"]}, "kinds"),
        ({"count": 5, "anomaly": anomaly("moon_landing")}, "moon_landing"),
        ({"count": 5, "anomaly": anomaly("cpu_spike", intensity=101)}, "intensity"),
        ({"count": 5, "anomaly": anomaly("cpu_spike", extra_field=1)}, "extra_field"),
        ({"count": 5, "anomaly": anomaly("cpu_spike", target_service="x-svc")}, "x-svc"),
        ({"count": 5, "anomaly": anomaly("disk_full", target_entity="db-9")}, "db-9"),
        ({"count": 5, "timestamp": "yesterday"}, "timestamp"),
        ({"count": 5, "timestamp": "2026-03-02T10:00:00"}, "timestamp"),
        ({"count": 5, "spread_seconds": -1}, "spread_seconds"),
        ({"count": 5, "timestamp": "9999-12-31T23:59:59Z", "spread_seconds": 86400}, "2100"),
        ({"count": 5, "log_types": ["api_gateway_log"], "services": ["ledger-service"]}, "none"),
    ],
)
def test_bad_bodies_are_422(client: TestClient, body: dict[str, object], needle: str) -> None:
    resp = client.post("/api/synthesize", json=body)
    assert resp.status_code == 422, resp.text
    assert needle in resp.text


@pytest.mark.parametrize(
    ("key", "body", "needle"),
    [
        ("../../etc/passwd", {"forward": True, "return_records": False}, "header.idempotency-key"),
        ("k" * 65, {"forward": True, "return_records": False}, "header.idempotency-key"),
        ("tick-1", {"forward": False}, "forward: true"),
        ("tick-1", {"forward": True, "return_records": True}, "return_records: false"),
    ],
)
def test_bad_idempotency_keys_are_422(
    client: TestClient, key: str, body: dict[str, object], needle: str
) -> None:
    resp = client.post(
        "/api/synthesize", json={"count": 5} | body, headers={"Idempotency-Key": key}
    )
    assert resp.status_code == 422, resp.text
    assert needle in resp.text


def test_unknown_log_type_lists_the_valid_ones(client: TestClient) -> None:
    resp = client.post("/api/synthesize", json={"count": 1, "log_types": ["x_log"]})
    assert resp.status_code == 422
    assert set(resp.json()["detail"]["valid"]) == set(LOG_TYPES)


def test_health_reports_unreachable_state_manager(client: TestClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json()["state_manager"] in {"unreachable", "unknown"}
    assert resp.json()["entity_source"] == "generated"


def test_control_token_guards_synthesize(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROL_TOKEN", "s3cret")
    get_settings.cache_clear()
    try:
        settings = Settings(state_port=free_port(), ingestion_port=free_port())
        with TestClient(create_app(settings)) as guarded:
            assert guarded.post("/api/synthesize", json={"count": 1}).status_code == 401
            ok = guarded.post(
                "/api/synthesize", json={"count": 1}, headers={"Authorization": "Bearer s3cret"}
            )
            assert ok.status_code == 200
            assert guarded.get("/api/log-types").status_code == 200
    finally:
        get_settings.cache_clear()


def test_openapi_documents_the_bounds_and_status_page_counts(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    request = spec["components"]["schemas"]["SynthesizeRequest"]["properties"]
    # 0 only with a series grid (tests/synthesis/test_series.py)
    assert request["count"]["maximum"] == 5000 and request["count"]["minimum"] == 0
    client.post("/api/synthesize", json={"count": 25, "kinds": ["metric"]})
    page = client.get("/")
    assert page.status_code == 200
    assert "records_metric" in page.text


def test_scope_names_outside_the_archetype_are_422(client: TestClient) -> None:
    for scope, needle in (
        ({"logs": {"cdn_log": ["api-gateway"]}}, "scope log types"),
        ({"metrics": {"queue.depth": ["payment-service"]}}, "scope metrics"),
        ({"apm": ["nobody"]}, "scope services"),
        ({"hosts": ["../etc"]}, "scope hosts"),
        ({"logs": {"system_resource_log": []}}, "1..20 services"),
    ):
        body = {"count": 5, "anomaly": anomaly("cpu_spike", scope=scope)}
        resp = client.post("/api/synthesize", json=body)
        assert resp.status_code == 422, (scope, resp.text)
        assert needle in resp.text, resp.text

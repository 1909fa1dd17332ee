"""The State Manager's HTTP API through FastAPI's TestClient, on a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stages.common import estate
from stages.common.config import Settings, get_settings
from stages.state.app import create_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))) as client:
        yield client


def test_seeded_on_first_start(client: TestClient) -> None:
    stats = client.get("/api/stats").json()
    assert stats["by_type"]["user"] == {"active": 500}
    assert stats["by_type"]["account"] == {"active": 800}
    assert stats["by_type"]["session"] == {"active": 200}
    assert stats["by_type"]["service"] == {"healthy": len(estate.SERVICES)}
    assert stats["by_type"]["host"] == {"healthy": len(estate.HOSTS)}
    assert stats["by_type"]["database"] == {"healthy": len(estate.DATABASES)}
    assert stats["by_type"]["queue"] == {"healthy": len(estate.QUEUES)}
    account = client.get("/api/entities/acc-00042").json()
    assert account["attributes"]["owner"].startswith("usr-")
    assert set(account["attributes"]) == {"owner", "currency", "balance", "tier"}
    assert client.get("/api/entities/payment-service").json()["attributes"]["hosts"] == [
        "payment-1", "payment-2", "payment-3",
    ]  # fmt: skip


def test_seeding_is_idempotent_and_keeps_changes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as first:
        first.post("/api/entities/usr-00007/transition", json={"to": "suspended"})
        before = first.get("/api/stats").json()
    with TestClient(create_app(settings)) as second:
        assert second.get("/api/stats").json() == before
        assert second.get("/api/entities/usr-00007").json()["state"] == "suspended"
        history = second.get("/api/entities/usr-00007/history").json()["items"]
        assert [(h["from"], h["to"]) for h in history] == [
            (None, "active"),
            ("active", "suspended"),
        ]


def test_list_filters_and_pages(client: TestClient) -> None:
    for n in (3, 1, 2):
        client.post(f"/api/entities/acc-0000{n}/transition", json={"to": "locked"})
    page = client.get("/api/entities", params={"type": "account", "state": "locked"}).json()
    assert page["total"] == 3
    assert [e["id"] for e in page["items"]] == ["acc-00001", "acc-00002", "acc-00003"]
    second = client.get("/api/entities", params={"type": "user", "limit": 10, "offset": 490}).json()
    assert second["total"] == 500 and len(second["items"]) == 10
    assert second["items"][-1]["id"] == "usr-00500"


def test_transition_then_history(client: TestClient) -> None:
    resp = client.post(
        "/api/entities/acc-00010/transition",
        json={"to": "locked", "reason": "auth_failure scenario sc-123"},
    )
    assert resp.status_code == 200
    assert resp.json()["state"] == "locked"
    client.post("/api/entities/acc-00010/transition", json={"to": "active", "reason": "unlocked"})
    items = client.get("/api/entities/acc-00010/history").json()["items"]
    assert [(i["from"], i["to"], i["reason"]) for i in items] == [
        (None, "active", "seeded"),
        ("active", "locked", "auth_failure scenario sc-123"),
        ("locked", "active", "unlocked"),
    ]
    assert items[1]["at"].endswith("Z")


def test_invalid_transition_is_409_listing_the_allowed_states(client: TestClient) -> None:
    client.post("/api/entities/users-db/transition", json={"to": "degraded"})
    client.post("/api/entities/users-db/transition", json={"to": "down"})
    resp = client.post("/api/entities/users-db/transition", json={"to": "healthy"})
    assert resp.status_code == 409
    assert resp.json() == {
        "error": "conflict",
        "message": "users-db cannot go from down to healthy",
        "detail": {"current": "down", "allowed": ["degraded", "maintenance"]},
    }
    assert client.get("/api/entities/users-db").json()["state"] == "down"


def test_repeating_a_transition_is_a_noop(client: TestClient) -> None:
    for _ in range(2):
        resp = client.post("/api/entities/ses-00001/transition", json={"to": "locked"})
        assert resp.status_code == 200 and resp.json()["state"] == "locked"
    assert len(client.get("/api/entities/ses-00001/history").json()["items"]) == 2


def test_create_and_conflict(client: TestClient) -> None:
    created = client.post(
        "/api/entities", json={"type": "account", "id": "acc-test-1", "attributes": {"tier": "x"}}
    )
    assert created.status_code == 201
    assert created.json()["state"] == "active"
    assert client.get("/api/entities/acc-test-1").json()["attributes"] == {"tier": "x"}
    again = client.post("/api/entities", json={"type": "account", "id": "acc-test-1"})
    assert again.status_code == 409 and "already exists" in again.json()["message"]
    generated = client.post("/api/entities", json={"type": "queue"}).json()
    assert generated["id"].startswith("q-") and generated["state"] == "healthy"


def test_bulk_state(client: TestClient) -> None:
    client.post("/api/entities/acc-00005/transition", json={"to": "suspended"})
    resp = client.post("/api/entities/bulk-state", json={"ids": ["acc-00004", "acc-00005", "x"]})
    assert resp.json() == {"acc-00004": "active", "acc-00005": "suspended", "x": None}
    too_many = client.post(
        "/api/entities/bulk-state", json={"ids": [f"acc-{n:05d}" for n in range(1001)]}
    )
    assert too_many.status_code == 422


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("GET", "/api/entities?type=spaceship", None, 422),
        ("GET", "/api/entities?state=sleepy", None, 422),
        ("GET", "/api/entities?limit=1001", None, 422),
        ("GET", "/api/entities?limit=0", None, 422),
        ("GET", "/api/entities?offset=-1", None, 422),
        ("GET", "/api/entities/nobody", None, 404),
        ("GET", "/api/entities/..%2Fx", None, 404),
        ("GET", "/api/entities/%2E%2E", None, 422),
        ("GET", "/api/entities/a%20b", None, 422),
        ("GET", "/api/entities/nobody/history", None, 404),
        ("POST", "/api/entities/nobody/transition", {"to": "locked"}, 404),
        ("POST", "/api/entities/acc-00001/transition", {"to": "healthy"}, 422),
        ("POST", "/api/entities/acc-00001/transition", {"to": "LOCKED"}, 422),
        ("POST", "/api/entities/acc-00001/transition", {"to": "locked", "x": 1}, 422),
        ("POST", "/api/entities/acc-00001/transition", {"to": "locked", "reason": "r" * 501}, 422),
        ("POST", "/api/entities", {"type": "spaceship"}, 422),
        ("POST", "/api/entities", {"type": "user", "id": "../etc/passwd"}, 422),
        ("POST", "/api/entities", {"type": "user", "attributes": {"a": "x" * 20_000}}, 422),
        ("POST", "/api/entities/bulk-state", {"ids": ["<script>"]}, 422),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, method: str, url: str, body: object, status: int
) -> None:
    resp = client.request(method, url, json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["message"]


def test_mutations_need_the_control_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROL_TOKEN", "s3cret")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
            body = {"to": "locked"}
            assert client.post("/api/entities/acc-00001/transition", json=body).status_code == 401
            assert client.post("/api/entities", json={"type": "user"}).status_code == 401
            ok = client.post(
                "/api/entities/acc-00001/transition",
                json=body,
                headers={"Authorization": "Bearer s3cret"},
            )
            assert ok.status_code == 200
            assert client.get("/api/entities/acc-00001").json()["state"] == "locked"
    finally:
        get_settings.cache_clear()


def test_health_and_status_page(client: TestClient) -> None:
    client.post("/api/entities/acc-00001/transition", json={"to": "closed"})
    assert client.get("/health").json()["status"] == "healthy"
    page = client.get("/").text
    assert "transitions refused" in page and "entities" in page

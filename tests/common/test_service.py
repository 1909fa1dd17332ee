"""The shared service plumbing, through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel

from stages.common.config import get_settings
from stages.common.errors import Conflict
from stages.common.service import ControlToken, create_service_app


class Body(BaseModel):
    count: int


def _app(healthy: bool = True) -> TestClient:
    router = APIRouter()

    @router.post("/api/things")
    def create(body: Body, _: ControlToken) -> dict[str, int]:
        if body.count == 13:
            raise Conflict("thirteen is taken", detail={"allowed": [1, 2]})
        return {"count": body.count}

    @router.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    app = create_service_app(
        "demo",
        health=lambda: (healthy, {"reason": "db down"} if not healthy else {}),
        status=lambda: {"records": 5, "<script>alert(1)</script>": "<img src=x onerror=y>"},
        routers=[router],
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CONTROL_TOKEN", "s3cret")
    get_settings.cache_clear()
    yield "s3cret"
    get_settings.cache_clear()


def test_health_metrics_docs() -> None:
    client = _app()
    assert client.get("/health").json() == {"status": "healthy", "service": "demo"}
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "demo"
    unhealthy = _app(healthy=False).get("/health")
    assert unhealthy.status_code == 503
    assert unhealthy.json()["reason"] == "db down"


def test_errors_are_json_with_a_message_and_never_leak_internals() -> None:
    client = _app()
    resp = client.post("/api/things", json={"count": 13})
    assert resp.status_code == 409
    assert resp.json() == {
        "error": "conflict",
        "message": "thirteen is taken",
        "detail": {"allowed": [1, 2]},
    }
    bad = client.post("/api/things", json={"count": "many"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["location"] == "body.count"
    boom = client.get("/api/boom")
    assert boom.status_code == 500
    assert "secret" not in boom.text
    assert client.get("/nope").status_code == 404


def test_status_page_escapes_counters() -> None:
    page = _app().get("/")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text and "&lt;img src=x" in page.text
    assert 'href="/docs"' in page.text


def test_control_token_guards_mutations(token: str) -> None:
    client = _app()
    assert client.post("/api/things", json={"count": 1}).status_code == 401
    wrong = client.post("/api/things", json={"count": 1}, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and "CONTROL_TOKEN" in wrong.json()["message"]
    ok = client.post("/api/things", json={"count": 1}, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200

"""The shared browser checks honour ALLOWED_HOSTS and ALLOWED_ORIGINS, and nothing else gets in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.testclient import TestClient

from stages.common.config import Settings
from stages.common.hosts import HostPolicy, normalise_origin, split_host
from stages.common.service import create_service_app


def _client(**settings: Any) -> TestClient:
    router = APIRouter()

    @router.post("/api/thing")
    def thing() -> dict[str, str]:
        return {"done": "yes"}

    app = create_service_app("guarded", routers=[router], settings=Settings(**settings))
    return TestClient(app, base_url="http://127.0.0.1:8123")


def test_defaults_answer_loopback_and_compose_names_only() -> None:
    client = _client(allowed_hosts="", allowed_origins="")
    for host in ("127.0.0.1:8123", "localhost", "[::1]:1", "state-manager:8003", "localstack"):
        assert client.get("/health", headers={"Host": host}).status_code == 200, host
    for host in ("testserver", "box.example", "127.0.0.2", "localhost.example", "[::2]", "a b"):
        resp = client.get("/health", headers={"Host": host})
        assert resp.status_code == 400, host
        assert resp.json()["error"] == "host_not_allowed"


def test_allowed_hosts_and_origins_are_added() -> None:
    client = _client(
        allowed_hosts="box.example, 10.1.2.3", allowed_origins="http://ui.example:3000"
    )
    assert client.get("/health", headers={"Host": "box.example:8000"}).status_code == 200
    assert client.get("/health", headers={"Host": "10.1.2.3"}).status_code == 200
    own = {"Host": "box.example:8000", "Origin": "http://box.example:8000"}
    assert client.post("/api/thing", headers=own).status_code == 200
    listed = {"Origin": "http://ui.example:3000"}
    assert client.post("/api/thing", headers=listed).status_code == 200
    other_port = {"Origin": "http://ui.example:3001"}
    assert client.post("/api/thing", headers=other_port).status_code == 403


def test_a_bind_address_is_a_host_name() -> None:
    client = _client(allowed_hosts="", state_host="10.9.8.7")
    assert client.get("/health", headers={"Host": "10.9.8.7:8003"}).status_code == 200


def test_star_answers_every_host() -> None:
    client = _client(allowed_hosts="*")
    assert client.get("/health", headers={"Host": "anything.example"}).status_code == 200


def test_header_parsing() -> None:
    assert split_host("LocalHost:8000") == "localhost"
    assert split_host("[::1]:8000") == "::1"
    assert split_host("localhost:80x") is None
    assert split_host("[::1]x") is None
    assert normalise_origin("http://LOCALHOST:80") == "http://localhost"
    assert normalise_origin("null") is None
    assert normalise_origin("file://") is None
    assert normalise_origin("http://a.example/path") is None
    policy = HostPolicy.build(subdomains=True)
    assert policy.allows_host("md-raw-logs.localhost:4566")
    assert not policy.allows_host("localhost.attacker.example")

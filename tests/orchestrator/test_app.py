"""Service plumbing of the orchestrator: control token, health, status page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from stages.common.config import Settings, get_settings
from stages.orchestrator.app import create_app


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CONTROL_TOKEN", "s3cret")
    get_settings.cache_clear()
    yield "s3cret"
    get_settings.cache_clear()


def test_mutations_need_the_token_and_reads_do_not(client: TestClient, token: str) -> None:
    body = {"interval_seconds": 2, "logs_per_interval": 10, "duration_seconds": 60}
    assert client.post("/api/continuous/start", json=body).status_code == 401
    assert client.post("/api/continuous/stop").status_code == 401
    assert (
        client.post("/api/anomaly/trigger", json={"anomaly_type": "cpu_spike"}).status_code == 401
    )
    assert client.post("/api/scenarios/cpu_spike--api-gateway/execute", json={}).status_code == 401
    assert client.get("/api/continuous/stats").json()["running"] is False
    assert client.get("/api/scenarios").status_code == 200
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/continuous/start", json=body, headers=auth).status_code == 200
    assert client.post("/api/continuous/stop", headers=auth).json()["running"] is False


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/continuous/start" in spec["paths"]
    start = spec["components"]["schemas"]["ContinuousStartRequest"]
    assert start["additionalProperties"] is False
    assert start["properties"]["interval_seconds"]["minimum"] == 0.05
    assert "409" in spec["paths"]["/api/continuous/start"]["post"]["responses"]


def test_root_is_the_control_panel(client: TestClient) -> None:
    # The shared status page is replaced by the control panel (tests/orchestrator/test_panel.py).
    page = client.get("/")
    assert page.status_code == 200
    assert "Scenario Orchestrator" in page.text and 'id="continuous-form"' in page.text


def test_health_reports_peers_without_depending_on_them(
    client: TestClient, settings: Settings
) -> None:
    body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["peers"] == {"synthesis": "healthy", "state": "healthy"}
    dead = settings.model_copy(update={"synthesis_port": 1})
    with TestClient(create_app(dead)) as lonely:
        resp = lonely.get("/health")
    assert resp.status_code == 200
    assert resp.json()["peers"]["synthesis"] == "unreachable"


def test_health_is_503_when_ground_truth_cannot_be_written(settings: Settings) -> None:
    blocker = settings.data_dir.parent / "not-a-dir"
    blocker.write_text("")
    broken = settings.model_copy(update={"data_dir": blocker / "data"})
    with TestClient(create_app(broken)) as client:
        resp = client.get("/health")
    assert resp.status_code == 503
    assert "ground truth" in resp.json()["reason"]

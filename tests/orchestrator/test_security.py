"""Mutating endpoints need the control token when one is configured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from stages.common.config import get_settings


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


def test_status_page_shows_counters(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "scenario-orchestrator" in page.text and "continuous measured rate" in page.text
    assert client.get("/health").json()["status"] == "healthy"

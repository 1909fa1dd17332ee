"""``python -m stages.synthesis`` as a real process, forwarding to a stub Ingestion Interface."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stages.common.service import serve_in_thread
from tests.support.processes import base_env, free_port, start_service


@dataclass
class StubIngestion:
    """Accepts batches, or answers 503 + Retry-After while ``failing`` is set."""

    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    refused: int = 0
    failing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/ingest/batch")
        async def ingest(request: Request) -> JSONResponse:
            records = (await request.json())["records"]
            with self.lock:
                if self.failing:
                    self.refused += 1
                    return JSONResponse({"error": "spool full"}, 503, {"Retry-After": "1"})
                self.batches.append(records)
            return JSONResponse({"accepted": len(records)})

        return app


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[StubIngestion, int]]:
    ingestion = StubIngestion()
    port = free_port()
    server: uvicorn.Server = serve_in_thread(ingestion.app(), "127.0.0.1", port)
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield ingestion, port
    server.should_exit = True


@pytest.fixture(scope="module")
def synthesis(
    stub: tuple[StubIngestion, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    _, ingestion_port = stub
    port = free_port()
    logs = tmp_path_factory.mktemp("synthesis")
    env = base_env(
        "http://127.0.0.1:1",
        SYNTHESIS_PORT=str(port),
        INGESTION_PORT=str(ingestion_port),
        STATE_PORT=str(free_port()),
        DATA_DIR=str(Path(logs) / "data"),
    )
    proc, url = start_service("synthesis", env, logs, port)
    try:
        yield url
    finally:
        proc.stop()


def test_forwards_in_chunks_of_500(stub: tuple[StubIngestion, int], synthesis: str) -> None:
    ingestion, _ = stub
    resp = httpx.post(
        f"{synthesis}/api/synthesize",
        json={"count": 1200, "seed": 5, "forward": True, "return_records": False},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["forwarded"] == 1200
    # Chunks are in flight together, so they may arrive in any order.
    assert sorted(len(b) for b in ingestion.batches) == [200, 500, 500]
    ids = {r["event_id"] for b in ingestion.batches for r in b}
    assert len(ids) == 1200
    assert "synthesis_forwarded_records_total 1200.0" in httpx.get(f"{synthesis}/metrics").text
    health = httpx.get(f"{synthesis}/health").json()
    assert health["status"] == "healthy" and health["state_manager"] == "unreachable"


def test_ingestion_503_becomes_503_with_the_count(
    stub: tuple[StubIngestion, int], synthesis: str
) -> None:
    ingestion, _ = stub
    ingestion.batches.clear()
    ingestion.failing = True
    try:
        started = time.monotonic()
        resp = httpx.post(
            f"{synthesis}/api/synthesize",
            json={"count": 700, "forward": True, "return_records": False},
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        ingestion.failing = False
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["detail"] == {"forwarded": 0, "total": 700}
    assert ingestion.refused >= 3  # it retried before giving up
    assert elapsed < 10  # bounded, and inside the callers' 10 s timeout
    metrics = httpx.get(f"{synthesis}/metrics").text
    assert "synthesis_forward_failed_records_total 700.0" in metrics
    # once ingestion recovers, the same request goes through
    again = httpx.post(
        f"{synthesis}/api/synthesize", json={"count": 700, "forward": True}, timeout=30
    )
    assert again.status_code == 200 and again.json()["forwarded"] == 700

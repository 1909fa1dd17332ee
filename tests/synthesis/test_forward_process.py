"""``python -m stages.synthesis`` as a real process, forwarding to a stub Ingestion Interface."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stages.common.service import serve_in_thread
from stages.orchestrator.clients import SynthesisClient, SynthesisRequest
from tests.support.processes import base_env, free_port, start_service
from tests.synthesis.helpers import INSIDE, anomaly


@dataclass
class StubIngestion:
    """Accepts batches, or answers 503 + Retry-After while ``failing`` is set or once it has
    accepted ``accept_before_failing`` more batches; ``slow_seconds`` holds the answer to the
    next batch back (after keeping it), as a stalled ingestion would."""

    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    refused: int = 0
    failing: bool = False
    accept_before_failing: int | None = None
    rejecting: bool = False  # answer 400, as ingestion does to invalid records
    # answer this many batches 503 after keeping every other record, naming them per record
    # as ingestion does when its spool fills part way through a batch
    partial_answers: int = 0
    slow_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def records(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for batch in self.batches for r in batch]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/ingest/batch")
        async def ingest(request: Request) -> JSONResponse:
            records = (await request.json())["records"]
            with self.lock:
                if self.accept_before_failing is not None:
                    self.failing = self.accept_before_failing <= 0
                    self.accept_before_failing -= 1
                if self.rejecting and self.batches:  # the first batch gets in
                    return JSONResponse({"error": "validation_error"}, 400)
                if self.partial_answers > 0:
                    self.partial_answers -= 1
                    return self._partial(records)
                if self.failing:
                    self.refused += 1
                    return JSONResponse({"error": "spool full"}, 503, {"Retry-After": "1"})
                self.batches.append(records)
                delay, self.slow_seconds = self.slow_seconds, 0.0
            await asyncio.sleep(delay)
            return JSONResponse({"accepted": len(records)})

        return app

    def _partial(self, records: list[dict[str, Any]]) -> JSONResponse:
        self.batches.append(records[::2])
        results = [
            {"index": i, "event_id": r["event_id"], "status": "retry" if i % 2 else "accepted"}
            for i, r in enumerate(records)
        ]
        detail = {"accepted": len(records[::2]), "retry": len(records[1::2]), "results": results}
        body = {"error": "unavailable", "message": "spool full", "detail": detail}
        return JSONResponse(body, 503, {"Retry-After": "1"})


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[StubIngestion, int]]:
    ingestion = StubIngestion()
    port = free_port()
    served = serve_in_thread(ingestion.app(), "127.0.0.1", port)
    deadline = time.monotonic() + 10
    while not served.server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield ingestion, port
    served.stop()


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


def _keyed(synthesis: str, body: dict[str, Any], key: str) -> httpx.Response:
    return httpx.post(
        f"{synthesis}/api/synthesize", json=body, headers={"Idempotency-Key": key}, timeout=30
    )


def _ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["event_id"] for r in records}


def test_a_retry_after_a_lost_answer_makes_nothing_twice(
    stub: tuple[StubIngestion, int], synthesis: str
) -> None:
    """The fault behind a flaky CI run: the orchestrator's call timed out after synthesis had
    forwarded the records, and the retry made a second set under new event ids. Here ingestion
    holds its answer back until the orchestrator's client has given up on the first attempt."""
    ingestion, _ = stub
    ingestion.batches.clear()
    replayed_before = _replayed(synthesis)
    # The client gives up after 2 s; later attempts (0.2, 0.4, 0.8 s apart) wait for the first
    # one, which ends once ingestion answers at 3 s: well within synthesis's 6 s budget even on
    # a loaded machine (4 s left only 2 s for everything else), and surely after the client's
    # 2 s, since load only makes the answer later.
    ingestion.slow_seconds = 3.0
    request = SynthesisRequest(count=40, seed=7, timestamp=datetime.now(UTC), spread_seconds=1)
    with httpx.Client(base_url=synthesis, timeout=httpx.Timeout(2.0)) as http:
        outcome = SynthesisClient(http).synthesize(request, threading.Event())
    assert outcome.error is None, outcome.error
    assert outcome.retries >= 1 and outcome.produced == 40
    records = ingestion.records()
    assert len(records) == 40 and len(_ids(records)) == 40
    # the attempts after the first one waited for it and were answered from its outcome
    assert _replayed(synthesis) > replayed_before


def _replayed(synthesis: str) -> float:
    return _metric(synthesis, 'synthesis_requests_total{outcome="replayed"}')


def _send_counts(synthesis: str) -> dict[str, float]:
    return {
        "made": sum(
            _metric(synthesis, f'synthesis_records_total{{anomalous="{a}",kind="{k}"}}')
            for a in ("false", "true")
            for k in ("log", "metric", "apm")
        ),
        "resent": _metric(synthesis, "synthesis_resent_records_total"),
        "failed": _metric(synthesis, "synthesis_forward_failed_records_total"),
        "forwarded": _metric(synthesis, "synthesis_forwarded_records_total"),
    }


def _metric(synthesis: str, sample: str) -> float:
    metrics = httpx.get(f"{synthesis}/metrics").text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_chunk_whose_answer_timed_out_is_sent_again_with_the_same_ids(
    stub: tuple[StubIngestion, int], synthesis: str
) -> None:
    """Ingestion keeps the chunk but answers after synthesis's 6 s budget: synthesis cannot tell
    whether it got in, so it answers 503 with nothing forwarded, and the retry under the key
    sends the very same records again (which the lake's duplicate window drops). Nothing new
    is made."""
    ingestion, _ = stub
    ingestion.batches.clear()
    ingestion.slow_seconds = 7.0
    body = {
        "count": 40,
        "seed": 3,
        "timestamp": INSIDE,
        "anomaly": anomaly("cpu_spike"),
        "anomalous_share": 0.5,
        "forward": True,
        "return_records": False,
    }
    key = "tick-lost-chunk"
    before = _send_counts(synthesis)
    first = _keyed(synthesis, body, key)
    assert first.status_code == 503, first.text
    assert first.json()["detail"] == {"forwarded": 0, "total": 40}
    retry = _keyed(synthesis, body, key)
    assert retry.status_code == 200, retry.text
    records = ingestion.records()
    assert len(records) == 80 and len(_ids(records)) == 40
    originals: dict[str, dict[str, Any]] = {}
    for record in records:
        assert originals.setdefault(record["event_id"], record) == record
    assert retry.json()["count"] == retry.json()["forwarded"] == 40
    anomalous = sum(1 for r in originals.values() if r["is_anomaly"])
    assert retry.json()["anomalous"] == anomalous > 0
    # each send is counted once, forwarded or failed: made 40 + re-sent 40 = failed 40 + in 40
    sends = {name: n - before[name] for name, n in _send_counts(synthesis).items()}
    assert sends == {"made": 40, "resent": 40, "failed": 40, "forwarded": 40}


def test_a_retry_after_a_partial_503_makes_only_the_rest(
    stub: tuple[StubIngestion, int], synthesis: str
) -> None:
    ingestion, _ = stub
    ingestion.batches.clear()
    ingestion.accept_before_failing = 1  # the first chunk to arrive, then 503s
    body = {
        "count": 1200,
        "seed": 9,
        "timestamp": INSIDE,
        "anomaly": anomaly("cpu_spike"),
        "anomalous_share": 0.5,
        "forward": True,
        "return_records": False,
    }
    key = "tick-0042"
    try:
        first = _keyed(synthesis, body, key)
    finally:
        ingestion.accept_before_failing = None
        ingestion.failing = False
    assert first.status_code == 503, first.text
    # the chunks are in flight together, so the one let through is a 500 or the 200
    forwarded = first.json()["detail"]["forwarded"]
    assert first.json()["detail"]["total"] == 1200 and forwarded in (200, 500)
    assert len(ingestion.records()) == forwarded
    retry = _keyed(synthesis, body, key)
    assert retry.status_code == 200, retry.text
    assert retry.json()["count"] == retry.json()["forwarded"] == 1200
    records = ingestion.records()
    assert sorted(len(b) for b in ingestion.batches) == [200, 500, 500]
    assert len(_ids(records)) == 1200
    assert retry.json()["anomalous"] == sum(1 for r in records if r["is_anomaly"]) > 0
    # once finished, the same key answers the same without making anything
    again = _keyed(synthesis, body, key)
    assert again.json() == retry.json() and len(ingestion.records()) == 1200
    # ... and a different request under it is refused, not silently answered
    other = _keyed(synthesis, body | {"count": 1201}, key)
    assert other.status_code == 422
    assert "used for a different request" in other.json()["message"]


def test_a_keyed_502_says_what_the_key_has_in_ingestion(
    stub: tuple[StubIngestion, int], synthesis: str
) -> None:
    ingestion, _ = stub
    ingestion.batches.clear()
    ingestion.rejecting = True
    body = {"count": 1200, "seed": 4, "forward": True, "return_records": False}
    key = "tick-rejected"
    try:
        resp = _keyed(synthesis, body, key)
    finally:
        ingestion.rejecting = False
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"] == "ingestion_rejected"
    detail = resp.json()["detail"]
    assert detail["ingestion_status"] == 400
    assert detail["total"] == 1200 and detail["forwarded"] == len(ingestion.records()) > 0


def test_a_keyed_retry_after_partly_accepted_chunks_sends_exactly_the_rest(
    stub: tuple[StubIngestion, int], synthesis: str
) -> None:
    """Ingestion's 503s name record by record what it kept: synthesis counts those as
    forwarded, and the retry under the key sends each other record once, under its own id."""
    ingestion, _ = stub
    ingestion.batches.clear()
    ingestion.partial_answers = 3
    ingestion.failing = True  # after the partial answers: 503s that name nothing
    body = {"count": 1200, "seed": 11, "forward": True, "return_records": False}
    key = "tick-partly-in"
    try:
        first = _keyed(synthesis, body, key)
    finally:
        ingestion.failing = False
    assert first.status_code == 503, first.text
    kept = ingestion.records()
    assert len(kept) > 0
    assert first.json()["detail"] == {"forwarded": len(kept), "total": 1200}
    retry = _keyed(synthesis, body, key)
    assert retry.status_code == 200, retry.text
    assert retry.json()["forwarded"] == 1200
    records = ingestion.records()
    assert len(records) == len(_ids(records)) == 1200  # none twice
    assert _ids(kept) <= _ids(records)

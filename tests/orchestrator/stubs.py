"""Stub Log Synthesis and State Manager peers: a real HTTP server (uvicorn in a thread) that
records every request, so tests can check what the orchestrator asked for."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stages.common import estate
from stages.common.service import ServingThread, serve_in_thread
from stages.synthesis.schemas import SynthesizeRequest
from tests.support.processes import free_port

BUSINESS_TRANSITIONS = {
    "active": {"suspended", "locked"},
    "suspended": {"active", "closed"},
    "locked": {"active", "closed"},
    "closed": set(),
}
SYSTEM_TRANSITIONS = {
    "healthy": {"degraded", "maintenance"},
    "degraded": {"healthy", "down", "maintenance"},
    "down": {"degraded", "maintenance"},
    "maintenance": {"healthy"},
}


def seed_entities() -> dict[str, dict[str, Any]]:
    entities: dict[str, dict[str, Any]] = {}
    for i in range(1, 4):
        entities[f"acc-{i}"] = {"id": f"acc-{i}", "type": "account", "state": "active"}
        entities[f"usr-{i}"] = {"id": f"usr-{i}", "type": "user", "state": "active"}
    for kind, names in (
        ("service", estate.SERVICE_NAMES),
        ("database", estate.DATABASES),
        ("queue", estate.QUEUES),
        ("host", estate.HOSTS),
    ):
        for name in names:
            entities[name] = {"id": name, "type": kind, "state": "healthy"}
    for entity in entities.values():
        entity["attributes"] = {}
    return entities


@dataclass
class Peers:
    url: str = ""
    port: int = 0
    synthesize: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    entities: dict[str, dict[str, Any]] = field(default_factory=seed_entities)
    fail_next: int = 0  # answer this many synthesize calls with 503
    conflict_next: int = 0  # ... with 409: an earlier attempt under the key is still running
    # answer the next call 502 "ingestion rejected" after forwarding this many of its records
    reject_after: int | None = None
    # answer the next calls 503 after forwarding this many of their records (like synthesis
    # when ingestion gives up mid-request)
    partial_forward: list[int] = field(default_factory=list)
    delay_seconds: float = 0.0
    forwarded_by_key: dict[str, int] = field(default_factory=dict)  # Idempotency-Key -> records
    ingested: list[dict[str, Any]] = field(default_factory=list)
    log_types: list[dict[str, Any]] = field(default_factory=list)  # GET /api/log-types
    lock: threading.Lock = field(default_factory=threading.Lock)

    def produced(self) -> int:
        with self.lock:
            return sum(r["count"] for r in self.synthesize)


def _total(body: dict[str, Any]) -> int:
    """Records the request makes, as synthesis counts them (a series grid besides count)."""
    if "series" not in body:
        return body["count"]
    return SynthesizeRequest.model_validate(body).total()


def build_app(peers: Peers) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.post("/api/synthesize")
    async def synthesize(request: Request) -> JSONResponse:
        body = await request.json()
        # Like synthesis: a key's retries make only what its earlier attempts did not forward,
        # and answers count everything the key has forwarded.
        key = request.headers.get("idempotency-key")
        with peers.lock:
            if peers.fail_next > 0:
                peers.fail_next -= 1
                return JSONResponse({"error": "busy"}, 503, headers={"Retry-After": "1"})
            if peers.conflict_next > 0:
                peers.conflict_next -= 1
                return JSONResponse({"error": "conflict"}, 409, headers={"Retry-After": "1"})
            earlier = peers.forwarded_by_key.get(key, 0) if key else 0
            total = _total(body)
            missing = total - earlier
            if peers.reject_after is not None:
                forwarded, peers.reject_after = min(peers.reject_after, missing), None
                peers.synthesize.append(body | {"count": forwarded, "key": key})
                detail = {"forwarded": earlier + forwarded, "total": body["count"]}
                return JSONResponse({"error": "ingestion_rejected", "detail": detail}, 502)
            if peers.partial_forward:
                forwarded = min(peers.partial_forward.pop(0), missing)
                peers.synthesize.append(
                    body | {"count": forwarded, "partial_of": missing, "key": key}
                )
                if key:
                    peers.forwarded_by_key[key] = earlier + forwarded
                detail = {"forwarded": earlier + forwarded, "total": body["count"]}
                return JSONResponse(
                    {"error": "unavailable", "message": "ingestion gave up", "detail": detail},
                    503,
                    headers={"Retry-After": "1"},
                )
            peers.synthesize.append(
                body | {"count": missing, "key": key, "received_at": time.monotonic()}
            )
            if key:
                peers.forwarded_by_key[key] = total
        if peers.delay_seconds:
            time.sleep(peers.delay_seconds)  # blocks the loop on purpose: a slow synthesis
        return JSONResponse({"count": total, "forwarded": total})

    @app.get("/api/log-types")
    def log_types() -> list[dict[str, Any]]:
        return peers.log_types

    @app.post("/api/ingest/batch")
    async def ingest(request: Request) -> JSONResponse:
        body = await request.json()
        records = body["records"] if isinstance(body, dict) else body
        with peers.lock:
            peers.ingested.extend(records)
        return JSONResponse({"accepted": len(records)})

    @app.get("/api/entities")
    def entities(type: str, limit: int = 50) -> dict[str, Any]:
        items = [e for e in peers.entities.values() if e["type"] == type][:limit]
        return {"items": items, "total": len(items)}

    @app.post("/api/entities/{entity_id}/transition")
    async def transition(entity_id: str, request: Request) -> JSONResponse:
        body = await request.json()
        peers.transitions.append((entity_id, body))
        entity = peers.entities.get(entity_id)
        if entity is None:
            return JSONResponse({"error": "not_found"}, 404)
        machine = (
            BUSINESS_TRANSITIONS if entity["type"] in ("account", "user") else SYSTEM_TRANSITIONS
        )
        allowed = machine[entity["state"]]
        if body["to"] != entity["state"] and body["to"] not in allowed:
            detail = {"current": entity["state"], "allowed": sorted(allowed)}
            return JSONResponse({"error": "conflict", "detail": detail}, 409)
        entity["state"] = body["to"]
        return JSONResponse(entity)

    return app


def start_peers() -> tuple[Peers, ServingThread]:
    peers = Peers(port=free_port())
    peers.url = f"http://127.0.0.1:{peers.port}"
    server = serve_in_thread(build_app(peers), "127.0.0.1", peers.port)
    deadline = time.monotonic() + 10
    while not server.server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("stub peers did not start")
        time.sleep(0.02)
    return peers, server

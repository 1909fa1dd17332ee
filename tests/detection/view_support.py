"""What the detection view's tests share: features rows, ground-truth windows in the
orchestrator's shape, and a stand-in orchestrator serving them over real HTTP."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from stages.common.service import serve_in_thread
from tests.detection.support import metric_rows
from tests.support.processes import free_port, wait_http_ok

WIDTH = 10


def feature_rows(
    services: tuple[str, ...], start: datetime, buckets: int, spike: int | None = None
) -> pa.Table:
    """Features rows of cpu.utilization and latency.p95 per service and 10 s bucket, plus a
    metric no series reads."""
    points = []
    for service in services:
        for i in range(buckets):
            moment = start + timedelta(seconds=i * WIDTH)
            rng = random.Random(f"{service}-{i}")
            cpu = 97.0 if i == spike and service == services[0] else 40.0 + rng.gauss(0, 2.0)
            points += [
                (service, "cpu.utilization", moment, cpu),
                (service, "latency.p95", moment, 120.0 + rng.gauss(0, 6.0)),
                (service, "memory.utilization", moment, 99.0),
            ]
    return metric_rows(points, WIDTH, spread=1.0)


def window(
    window_id: str, service: str, start: datetime, end: datetime | None, **extra: Any
) -> dict[str, Any]:
    """A window as the orchestrator's /api/ground-truth lists it."""
    stamp = lambda moment: moment.isoformat().replace("+00:00", "Z")  # noqa: E731
    body = {
        "id": window_id,
        "scenario_id": f"scenario-{window_id}",
        "anomaly_type": "cpu_spike",
        "services": [service],
        "metrics": ["cpu.utilization"],
        "log_types": [],
        "scope": {"logs": {}, "metrics": {}, "apm": [service], "hosts": []},
        "target_entity": None,
        "start": stamp(start),
        "planned_end": stamp(end or start + timedelta(hours=1)),
        "end": stamp(end) if end else None,
        "intensity": 80.0,
        "ramp_seconds": 0.0,
        "source": "trigger",
    }
    body.update(extra)
    return body


class FakeOrchestrator:
    """The orchestrator's GET /api/ground-truth, served by uvicorn on a free port, with windows
    (and, for the failure tests, an answer) the test chooses."""

    def __init__(self, windows: list[dict[str, Any]]) -> None:
        self.windows = windows
        self.broken: tuple[int, Any] | None = None
        self.requests = 0
        self.port = free_port()
        app = FastAPI()

        @app.get("/api/ground-truth")
        def ground_truth(
            limit: int = Query(1000, ge=1, le=10_000), offset: int = Query(0, ge=0)
        ) -> JSONResponse:
            self.requests += 1
            if self.broken is not None:
                return JSONResponse(self.broken[1], status_code=self.broken[0])
            items = self.windows[offset : offset + limit]
            body = {"items": items, "total": len(self.windows), "jsonl_path": "gt.jsonl"}
            return JSONResponse(body)

        @app.get("/health")
        def health() -> dict[str, str]:
            return {"status": "healthy"}

        self.server = serve_in_thread(app, "127.0.0.1", self.port)
        wait_http_ok(f"http://127.0.0.1:{self.port}/health", timeout=30)

    def stop(self) -> None:
        self.server.stop()

"""Plumbing every HTTP service shares: /health, Prometheus /metrics, /docs, and serving.

A service supplies its routers and a ``health`` callable; this module turns that into a FastAPI
app, so health and metrics look the same on every port.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest

import stages

# The *_created timestamps double every series and no dashboard of ours reads them.
disable_created_metrics()

# (healthy, details). Details are merged into the /health body, so they must be JSON-able.
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


def create_service_app(
    name: str,
    *,
    health: HealthCheck | None = None,
    routers: Sequence[APIRouter] = (),
    lifespan: Any = None,
    description: str = "",
) -> FastAPI:
    app = FastAPI(
        title=name, version=stages.__version__, description=description, lifespan=lifespan
    )

    @app.get("/health", tags=["ops"], summary="Liveness and readiness of the service")
    def get_health() -> JSONResponse:
        healthy, details = health() if health is not None else (True, {})
        body = {"status": "healthy" if healthy else "unhealthy", "service": name, **details}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    def get_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app


def serve_in_thread(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """Serve ``app`` from a daemon thread, for processes whose main thread does other work."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name=f"http-{port}", daemon=True)
    thread.start()
    return server

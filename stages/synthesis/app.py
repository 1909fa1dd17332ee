"""Log Synthesis HTTP API (port 8002): routes only; the work is in ``synthesizer``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import APIRouter, FastAPI, Header, Query, Request

from stages.common.config import Settings, get_settings
from stages.common.http import service_client
from stages.common.service import (
    ControlToken,
    configure_logging,
    create_service_app,
    run_service,
)
from stages.synthesis.idempotency import KEY_PATTERN, KEY_TTL_SECONDS
from stages.synthesis.schemas import LogTypeInfo, SynthesizeRequest, SynthesizeResponse
from stages.synthesis.synthesizer import Synthesizer, log_type_catalogue

# The State Manager is optional for synthesis: fail fast rather than hold up a refresh.
STATE_TIMEOUT = httpx.Timeout(2.0, connect=0.5)

router = APIRouter(prefix="/api", tags=["synthesis"])
_ERRORS = {
    409: {"description": "A request with the same Idempotency-Key is still running"},
    422: {
        "description": "Invalid body, unknown log type / service / anomaly type, or an "
        "Idempotency-Key reused for a different request"
    },
    502: {"description": "Ingestion rejected the records as invalid"},
    503: {"description": "Ingestion did not accept the records in time; retry after Retry-After"},
}


def _synthesizer(request: Request) -> Synthesizer:
    return request.app.state.synthesizer


@router.get("/log-types", summary="The log types synthesis makes, with their fields")
def list_log_types(
    category: Annotated[str | None, Query(max_length=64)] = None,
) -> list[LogTypeInfo]:
    return log_type_catalogue(category)


@router.post("/synthesize", summary="Make (and optionally forward) records", responses=_ERRORS)
def post_synthesize(
    body: SynthesizeRequest,
    request: Request,
    _: ControlToken,
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=KEY_PATTERN,
            description="Retries with the same key make only the records earlier attempts did "
            f"not get into ingestion; a finished request's answer is replayed (keys are kept "
            f"{KEY_TTL_SECONDS / 60:g} min, in memory).",
        ),
    ] = None,
) -> SynthesizeResponse:
    return _synthesizer(request).run(body, idempotency_key)


def create_app(settings: Settings) -> FastAPI:
    holder: dict[str, Synthesizer] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with (
            service_client(settings, "state", timeout=STATE_TIMEOUT) as state_client,
            service_client(settings, "ingestion") as ingestion_client,
        ):
            synthesizer = Synthesizer(state_client, ingestion_client)
            holder["synthesizer"] = app.state.synthesizer = synthesizer
            synthesizer.start()
            try:
                yield
            finally:
                synthesizer.stop()

    def health() -> tuple[bool, dict[str, object]]:
        if "synthesizer" not in holder:
            return False, {"reason": "starting"}
        return holder["synthesizer"].health()

    def status() -> dict[str, object]:
        return holder["synthesizer"].status() if "synthesizer" in holder else {}

    return create_service_app(
        "log-synthesis",
        health=health,
        status=status,
        routers=[router],
        lifespan=lifespan,
        description="Synthesises labelled log, metric and APM records of 63 log types.",
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    run_service(create_app(settings), settings.synthesis_host, settings.synthesis_port)

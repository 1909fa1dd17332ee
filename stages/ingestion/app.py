"""HTTP routes of the Ingestion Interface (port 8004)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from stages.common import resources
from stages.common.config import Settings, get_settings
from stages.common.errors import Unprocessable
from stages.common.http import service_client
from stages.common.records import Record
from stages.common.service import (
    ControlToken,
    configure_logging,
    create_service_app,
    read_body,
    run_service,
)
from stages.common.validation import MAX_BATCH_BODY_BYTES, parse_batch
from stages.ingestion.categories import CategoryFiles
from stages.ingestion.fanout import Ingestor, IngestResult, SpoolDrainer, ingestion_counters
from stages.ingestion.forward import ConsolidationForwarder
from stages.ingestion.kinesis import KinesisSink
from stages.ingestion.producer import KinesisProducer
from stages.ingestion.schemas import (
    IngestBatchRequest,
    IngestMetrics,
    IngestResponse,
    IngestUnavailable,
)
from stages.ingestion.spool import Spool

# The request path gives up on Kinesis after INGEST_KINESIS_TIMEOUT_SECONDS and spools the rest,
# so the producer's own retries are kept short: the spool drain is the long-term retry.
_INGEST_PRODUCER_MAX_RETRIES = 2
_INGEST_PRODUCER_MAX_BACKOFF = 1.0
_CONSOLIDATION_TIMEOUT = httpx.Timeout(5.0, connect=1.0)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the route reads itself (to check its size before parsing it)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _parse_one(body: bytes) -> list[Any]:
    try:
        value = orjson.loads(body)
    except ValueError as exc:
        raise Unprocessable("the body is not JSON") from exc
    return [value]


_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "body too large"},
    422: {},
    503: {
        "model": IngestUnavailable,
        "description": "some records were not accepted: resend exactly those whose status is "
        "retry (detail.results), with their event_id, after Retry-After",
    },
}


def _answer(result: IngestResult) -> Response:
    # Built with orjson rather than validated through IngestResponse: a 5,000-record answer
    # has 5,000 results, and the fields are plain values made by the ingestor.
    return Response(orjson.dumps(result.to_dict()), media_type="application/json")


def _router(ingestor_of: Any) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["ingestion"])

    @router.post(
        "/ingest/batch",
        response_model=IngestResponse,
        summary="Validate and accept a batch of canonical records",
        openapi_extra=_body_schema(IngestBatchRequest),
        responses=_RESPONSES,
    )
    async def ingest_batch(request: Request, _: ControlToken) -> Response:
        records = parse_batch(await read_body(request, MAX_BATCH_BODY_BYTES), IngestBatchRequest)
        result = await run_in_threadpool(ingestor_of(request).ingest, records)
        return _answer(result)

    @router.post(
        "/ingest",
        response_model=IngestResponse,
        summary="Validate and accept one canonical record",
        openapi_extra=_body_schema(Record),
        responses=_RESPONSES,
    )
    async def ingest_one(request: Request, _: ControlToken) -> Response:
        records = _parse_one(await read_body(request, MAX_BATCH_BODY_BYTES))
        result = await run_in_threadpool(ingestor_of(request).ingest, records)
        return _answer(result)

    @router.get("/metrics", response_model=IngestMetrics, summary="Counters of every outcome")
    def metrics(request: Request) -> IngestMetrics:
        state = request.app.state
        return IngestMetrics(
            counters=state.counters.snapshot(),
            spool_bytes=state.spool.pending_bytes(),
            spool_segments=state.spool.segment_count(),
            consolidation_queue_batches=state.forwarder.queued_batches(),
            consolidation_queue_bytes=state.forwarder.queued_bytes(),
        )

    return router


def _producers(settings: Settings) -> dict[str, KinesisProducer]:
    return {
        spec.kind: KinesisProducer(
            spec.name,
            settings,
            max_retries=min(settings.producer_max_retries, _INGEST_PRODUCER_MAX_RETRIES),
            max_backoff_seconds=min(
                settings.producer_max_backoff_seconds, _INGEST_PRODUCER_MAX_BACKOFF
            ),
        )
        for spec in resources.streams(settings)
    }


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    counters = ingestion_counters()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        spool = Spool(settings.data_dir / "spool", settings.spool_max_bytes)
        sink = KinesisSink(_producers(settings), settings.ingest_kinesis_timeout_seconds)
        client = service_client(settings, "consolidation", timeout=_CONSOLIDATION_TIMEOUT)
        forwarder = ConsolidationForwarder(
            client, counters, queue_bytes=settings.consolidation_queue_bytes
        )
        drainer = SpoolDrainer(spool, sink, counters)
        categories = CategoryFiles(settings.data_dir / "categories")
        app.state.spool, app.state.sink, app.state.forwarder = spool, sink, forwarder
        app.state.counters = counters
        app.state.ingestor = Ingestor(
            sink=sink,
            spool=spool,
            categories=categories,
            forwarder=forwarder,
            counters=counters,
        )
        drainer.start()
        try:
            yield
        finally:
            drainer.close()
            forwarder.close()
            client.close()
            sink.close()
            categories.close()

    app_ref: dict[str, FastAPI] = {}

    def health() -> tuple[bool, dict[str, Any]]:
        state = app_ref["app"].state
        if not hasattr(state, "sink"):
            return False, {"reason": "starting"}
        kinesis_ok, kinesis_error = state.sink.reachable()
        spool_bytes = state.spool.pending_bytes()
        spool_room = state.spool.has_room(1)
        details = {
            "kinesis_reachable": kinesis_ok,
            "kinesis_error": kinesis_error or None,
            "spool_bytes": spool_bytes,
            "spool_has_room": spool_room,
            "consolidation_reachable": state.forwarder.reachable(),
        }
        # Unhealthy only when a batch could be neither put nor spooled.
        return kinesis_ok is not False or spool_room, details

    def status() -> dict[str, Any]:
        state = app_ref["app"].state
        counters_now = counters.snapshot()
        if hasattr(state, "spool"):
            counters_now["spool_bytes"] = state.spool.pending_bytes()
        return counters_now

    app = create_service_app(
        "ingestion",
        health=health,
        status=status,
        routers=[_router(lambda request: request.app.state.ingestor)],
        lifespan=lifespan,
        max_body_bytes=MAX_BATCH_BODY_BYTES,
        description="Validates records; fans out to Kinesis (or a durable spool), local category "
        "files and Log Consolidation.",
    )
    app_ref["app"] = app
    return app


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    run_service(create_app(settings), settings.ingestion_host, settings.ingestion_port)

"""HTTP routes of Log Consolidation (port 8005): canonical batches, OTLP/HTTP, queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from stages.common.config import Settings, get_settings
from stages.common.errors import PayloadTooLarge
from stages.common.service import (
    ControlToken,
    configure_logging,
    create_service_app,
    read_body,
    run_service,
)
from stages.common.validation import MAX_BATCH_BODY_BYTES, parse_batch
from stages.consolidation import otlp
from stages.consolidation.export import OtlpExporter
from stages.consolidation.query import LogIndex
from stages.consolidation.schemas import (
    MAX_QUERY_LIMIT,
    LogBatchRequest,
    LogBatchResponse,
    LogList,
    Severity,
    Stats,
    Timeline,
)
from stages.consolidation.store import CannotStore, Consolidator, consolidation_counters
from stages.consolidation.writer import RotatingWriter

Limit = Annotated[int, Query(ge=1, le=MAX_QUERY_LIMIT)]


async def read_otlp_body(request: Request) -> bytes:
    try:
        return await read_body(request, otlp.MAX_BODY_BYTES)
    except PayloadTooLarge as exc:
        raise otlp.OtlpBodyTooLarge(exc.message) from exc


def _consolidator(request: Request) -> Consolidator:
    return request.app.state.consolidator


def _ingest_router() -> APIRouter:
    router = APIRouter(tags=["ingest"])

    @router.post(
        "/api/logs/batch",
        response_model=LogBatchResponse,
        summary="Normalise and store canonical records (what the Ingestion Interface sends)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": LogBatchRequest.model_json_schema()}},
            }
        },
        responses={413: {}, 422: {}, 503: {}},
    )
    async def logs_batch(request: Request, _: ControlToken) -> LogBatchResponse:
        body = await read_body(request, MAX_BATCH_BODY_BYTES)
        records = parse_batch(body, LogBatchRequest)
        result = await run_in_threadpool(_consolidator(request).add_records, records)
        return LogBatchResponse.model_validate(result, from_attributes=True)

    @router.post(
        "/v1/logs",
        summary="OTLP/HTTP logs receiver (application/x-protobuf or application/json)",
        response_class=Response,
        responses={
            200: {"description": "ExportLogsServiceResponse (partial_success names rejects)"},
            400: {"description": "undecodable body (google.rpc.Status)"},
            413: {},
            415: {"description": "unsupported Content-Type or Content-Encoding"},
            503: {},
        },
    )
    async def otlp_logs(request: Request, _: ControlToken) -> Response:
        content_type = request.headers.get("content-type")
        answer_as = otlp.response_media_type(content_type)
        try:
            body = otlp.decompress(
                await read_otlp_body(request), request.headers.get("content-encoding")
            )
            screened = otlp.screen(otlp.decode_request(body, content_type))
            await run_in_threadpool(
                _consolidator(request).add_request, screened.request, screened.rejected
            )
        except CannotStore as exc:
            error = otlp.StoreUnavailable(exc.message, headers=exc.headers)
            return _otlp_error(error, answer_as)
        except otlp.OtlpError as exc:
            return _otlp_error(exc, answer_as)
        return Response(otlp.export_response(screened, answer_as), media_type=answer_as)

    return router


def _otlp_error(error: otlp.OtlpError, media_type: str) -> Response:
    return Response(
        otlp.status_body(error, media_type),
        status_code=error.http_status,
        media_type=media_type,
        headers=error.headers,
    )


def _query_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["query"])

    @router.get("/logs/recent", response_model=LogList, summary="Newest records first")
    def recent(request: Request, limit: Limit = 100) -> LogList:
        logs = _consolidator(request).index.recent(limit)
        return LogList(count=len(logs), logs=logs)  # type: ignore[arg-type]

    @router.get(
        "/logs",
        response_model=LogList,
        summary="Filter the recent window by service, severity, anomaly flag and text",
    )
    def search(
        request: Request,
        service: Annotated[str | None, Query(max_length=128)] = None,
        severity: Severity | None = None,
        q: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
        anomalous: bool | None = None,
        limit: Limit = 100,
    ) -> LogList:
        logs = _consolidator(request).index.search(
            limit=limit, service=service, severity=severity, text=q, anomalous=anomalous
        )
        return LogList(count=len(logs), logs=logs)  # type: ignore[arg-type]

    @router.get("/stats", response_model=Stats, summary="Totals by service, severity, anomaly")
    def stats(request: Request) -> Stats:
        consolidator = _consolidator(request)
        return Stats(
            **consolidator.index.stats(),
            counters=consolidator.counters.snapshot(),
            files=len(request.app.state.writer.files()),
        )

    @router.get("/timeline", response_model=Timeline, summary="Record counts per time bucket")
    def timeline(
        request: Request,
        bucket_seconds: Annotated[int, Query(ge=1, le=86_400)] = 60,
        buckets: Annotated[int, Query(ge=1, le=1_440)] = 60,
    ) -> Timeline:
        points = _consolidator(request).index.timeline(bucket_seconds, buckets)
        return Timeline(bucket_seconds=bucket_seconds, buckets=points)  # type: ignore[arg-type]

    return router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    counters = consolidation_counters()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer = RotatingWriter(
            settings.data_dir / "consolidated",
            max_bytes=settings.consolidated_file_max_bytes,
            max_files=settings.consolidated_max_files,
        )
        exporter = (
            OtlpExporter(settings.otel_exporter_otlp_logs_endpoint, counters)
            if settings.otel_exporter_otlp_logs_endpoint
            else None
        )
        app.state.writer = writer
        app.state.consolidator = state["consolidator"] = Consolidator(
            writer,
            LogIndex(settings.consolidation_recent_records),
            counters,
            environment=settings.deployment_environment,
            exporter=exporter,
        )
        try:
            yield
        finally:
            if exporter is not None:
                exporter.close()
            writer.close()

    def health() -> tuple[bool, dict[str, Any]]:
        consolidator = state.get("consolidator")
        if consolidator is None:
            return False, {"reason": "starting"}
        return True, {"records": consolidator.index.stats()["total"]}

    return create_service_app(
        "consolidation",
        health=health,
        status=counters.snapshot,
        routers=[_ingest_router(), _query_router()],
        lifespan=lifespan,
        max_body_bytes=MAX_BATCH_BODY_BYTES,
        body_media_types={"/v1/logs": [otlp.PROTOBUF]},
        settings=settings,
        description="Normalises records to the OpenTelemetry log data model; OTLP/HTTP receiver; "
        "query API over the recent window.",
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    run_service(create_app(settings), settings.consolidation_host, settings.consolidation_port)

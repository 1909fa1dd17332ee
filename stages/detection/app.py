"""The detection service (port 8040): the detection loop in a thread, anomaly events and their
feedback over HTTP, and the shared /health, /metrics, /docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from stages.common import aws
from stages.common.config import Settings, get_settings
from stages.common.errors import NotFound
from stages.common.lakehouse import open_catalog
from stages.common.service import ControlToken, configure_logging, create_service_app, run_service
from stages.detection import view
from stages.detection.params import Moment
from stages.detection.store import EventFilter, EventNotFound
from stages.detection.worker import DetectionWorker


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["true_positive", "false_positive"]
    note: str | None = Field(default=None, max_length=2000)


class FeedbackRecord(BaseModel):
    event_id: str
    verdict: str
    note: str | None
    at: str


class AnomalyEvent(BaseModel):
    id: str
    service: str
    signals: list[str]
    start: str
    end: str | None = Field(description="the last anomalous bucket, once the event is closed")
    last_anomalous: str
    peak_score: float
    peak_at: str
    voters: list[str]
    severity: str
    state: str
    points: int
    history: bool = Field(
        default=False,
        description="found when older buckets arrived after newer ones and the models were "
        "rebuilt from them in time order; never alerted",
    )
    feedback: FeedbackRecord | None = None


class EventNotKnown(NotFound):
    error = "event_not_found"


def _public(event: dict[str, Any]) -> AnomalyEvent:
    return AnomalyEvent(**{k: v for k, v in event.items() if k != "start_epoch"})


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["anomalies"])

    @router.get("/anomalies", summary="Anomaly events, oldest first")
    def list_anomalies(
        request: Request,
        service: Annotated[str | None, Query(max_length=200)] = None,
        state: Literal["open", "closed"] | None = None,
        from_: Annotated[
            Moment,
            Query(alias="from", description="events still anomalous at or after this time"),
        ] = None,
        to: Annotated[Moment, Query(description="events starting at or before")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[AnomalyEvent]:
        worker: DetectionWorker = request.app.state.worker
        where = EventFilter(service, state, _epoch(from_), _epoch(to))
        return [_public(e) for e in worker.events.list(where)[-limit:]]

    @router.get(
        "/anomalies/{event_id}",
        summary="One anomaly event with its feedback",
        responses={404: {"description": "No event has this id"}},
    )
    def get_anomaly(request: Request, event_id: str) -> AnomalyEvent:
        worker: DetectionWorker = request.app.state.worker
        try:
            return _public(worker.events.get(event_id))
        except EventNotFound:
            raise EventNotKnown(f"no anomaly event {event_id[:200]!r}") from None

    @router.post(
        "/anomalies/{event_id}/feedback",
        summary="Say whether an event was a true or a false positive",
        responses={404: {"description": "No event has this id"}},
    )
    def post_feedback(
        request: Request, event_id: str, body: Feedback, _: ControlToken
    ) -> FeedbackRecord:
        worker: DetectionWorker = request.app.state.worker
        try:
            record = worker.events.feedback(event_id, body.verdict, body.note)
        except EventNotFound:
            raise EventNotKnown(f"no anomaly event {event_id[:200]!r}") from None
        return FeedbackRecord(**record)

    @router.get("/status", summary="Progress per service, counters, the last point's scores")
    def get_status(request: Request) -> dict[str, Any]:
        worker: DetectionWorker = request.app.state.worker
        return worker.status()

    return router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Built here, not in the lifespan, so that a bad setting stops the process at once.
    worker = DetectionWorker(
        settings,
        s3=aws.client("s3", settings),
        sqs=aws.client("sqs", settings),
        catalog=open_catalog(settings, name="detection"),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.worker = worker
        worker.start_thread()
        try:
            yield
        finally:
            worker.stop()

    def status() -> dict[str, Any]:
        snapshot = worker.status()
        return {
            **snapshot["counters"],
            "services": len(snapshot["services"]),
            "owned services": ", ".join(snapshot["owned_services"]) or "-",
            "open events": snapshot["events"]["open"],
            "lag seconds": snapshot["lag_seconds"],
            "last error": snapshot["last_error"],
        }

    return create_service_app(
        "detection",
        health=worker.healthy,
        status=status,
        routers=[_router(), view.router(settings)],
        status_page=False,  # the detection view is the page at /
        lifespan=lifespan,
        description="Stage 04 detection over telemetry.features: anomaly events with feedback; "
        "Stage 06 alerts on SQS.",
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    # pyiceberg says "Loaded FileIO" at INFO on every table load, i.e. at every round.
    logging.getLogger("pyiceberg.io").setLevel(max(logging.WARNING, logging.root.level))
    run_service(create_app(settings), settings.detection_host, settings.detection_port)

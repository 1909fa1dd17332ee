"""The Pattern Generator's HTTP API: routes only; the maths lives in shapes.py and compose.py."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from stages.common.config import Settings, get_settings
from stages.common.service import configure_logging, create_service_app, run_service
from stages.patterns import metrics
from stages.patterns.compose import MAX_COMPONENTS, PatternKind
from stages.patterns.kind_descriptions import describe_kinds
from stages.patterns.schemas import (
    MAX_POINTS,
    EvaluateRequest,
    PatternList,
    PreviewRequest,
    Series,
)
from stages.patterns.series import evaluate_range, single_kind

router = APIRouter(prefix="/api/patterns", tags=["patterns"])
_ERRORS = {422: {"description": "Invalid composition, parameters or range"}}


@router.get("", summary="Every pattern kind with its parameters, defaults and description")
def list_patterns() -> PatternList:
    return PatternList(
        patterns=describe_kinds(), max_components=MAX_COMPONENTS, max_points=MAX_POINTS
    )


@router.post("/evaluate", summary="Evaluate a composition over a time range", responses=_ERRORS)
def evaluate_composition(body: EvaluateRequest) -> Series:
    timestamps, values = evaluate_range(
        body.composition, body.start, body.end, body.step_seconds, body.seed
    )
    return Series(timestamps=timestamps, values=values)


@router.post("/preview/{kind}", summary="Evaluate one kind on its own", responses=_ERRORS)
def preview_kind(kind: PatternKind, body: PreviewRequest) -> Series:
    composition = single_kind(kind, body.params, body.baseline)
    timestamps, values = evaluate_range(
        composition, body.start, body.end, body.step_seconds, body.seed
    )
    return Series(timestamps=timestamps, values=values)


def create_app(settings: Settings) -> FastAPI:
    # Stateless: nothing to open or close, so no lifespan.
    return create_service_app(
        "pattern-generator",
        status=metrics.status_counters,
        routers=[router],
        description="Deterministic time-series shapes: baseline + seasonality, trend, noise and "
        "anomaly overlays. The same library is imported in-process as stages.patterns.",
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    run_service(create_app(settings), settings.patterns_host, settings.patterns_port)

"""Evaluating a composition (or one kind alone) over a time range, for the HTTP API."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from stages.common.errors import Unprocessable
from stages.patterns import metrics
from stages.patterns.compose import KIND_MODELS, Composition, evaluate, parse_component
from stages.patterns.schemas import MAX_POINTS


def point_count(start: datetime, end: datetime, step_seconds: float) -> int:
    return math.floor((end - start).total_seconds() / step_seconds + 1e-9) + 1


def evaluate_range(
    composition: Composition, start: datetime, end: datetime, step_seconds: float, seed: int
) -> tuple[list[datetime], list[float]]:
    """Points from ``start`` every ``step_seconds`` up to ``end`` inclusive, at most MAX_POINTS."""
    count = point_count(start, end, step_seconds)
    if count > MAX_POINTS:
        metrics.REJECTED.labels("too_many_points").inc()
        raise Unprocessable(
            f"the range has {count} points; at most {MAX_POINTS} are allowed "
            "(raise step_seconds or shorten the range)",
            detail={"points": count, "max_points": MAX_POINTS},
        )
    origin = start.timestamp()
    epochs = [origin + i * step_seconds for i in range(count)]
    values = evaluate(composition, epochs, seed)
    metrics.EVALUATIONS.inc()
    metrics.POINTS.inc(count)
    first = start.astimezone(UTC)
    return [first + timedelta(seconds=i * step_seconds) for i in range(count)], values


def single_kind(kind: str, params: dict[str, Any], baseline: float) -> Composition:
    """A composition of ``baseline`` plus one component of ``kind`` built from ``params``."""
    if kind not in KIND_MODELS:
        metrics.REJECTED.labels("unknown_kind").inc()
        raise Unprocessable(f"unknown pattern kind {kind!r}", detail={"valid": sorted(KIND_MODELS)})
    try:
        component = parse_component({**params, "kind": kind})
    except ValidationError as exc:
        metrics.REJECTED.labels("invalid_params").inc()
        raise Unprocessable(
            f"invalid parameters for {kind}",
            detail=[
                {"location": _location(err["loc"]), "problem": err["msg"]} for err in exc.errors()
            ],
        ) from exc
    return Composition(baseline=baseline, components=[component])


def _location(loc: tuple[int | str, ...]) -> str:
    # loc[0] is the kind (the union's tag); an empty rest means a check across parameters.
    return ".".join(["params", *(str(part) for part in loc[1:])])

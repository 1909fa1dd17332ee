"""Request and response models of the Pattern Generator's HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from stages.patterns.compose import Composition

MAX_POINTS = 100_000
MIN_STEP_SECONDS = 0.001
MAX_STEP_SECONDS = 7 * 86_400.0


class Parameter(BaseModel):
    name: str
    type: str
    required: bool
    default: Any = None
    description: str = ""
    bounds: dict[str, Any] = Field(default_factory=dict)


class PatternInfo(BaseModel):
    kind: str
    role: str
    description: str
    parameters: list[Parameter]


class PatternList(BaseModel):
    patterns: list[PatternInfo]
    max_components: int
    max_points: int


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime = Field(description="RFC 3339 with a time zone, e.g. 2026-01-05T00:00:00Z")
    end: AwareDatetime = Field(description="Inclusive end of the range (not before start).")
    # A millisecond at least: a smaller step (5e-324) overflowed the point count to infinity.
    step_seconds: float = Field(
        60.0,
        ge=MIN_STEP_SECONDS,
        le=MAX_STEP_SECONDS,
        allow_inf_nan=False,
        description="Spacing of points.",
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Same seed, same values.")

    @model_validator(mode="after")
    def _end_not_before_start(self) -> _Range:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class EvaluateRequest(_Range):
    composition: Composition


class PreviewRequest(_Range):
    """One kind on its own: ``params`` are that kind's parameters (see GET /api/patterns)."""

    baseline: float = Field(0.0, ge=-1e12, le=1e12, allow_inf_nan=False)
    params: dict[str, Any] = Field(default_factory=dict, max_length=16)


class Series(BaseModel):
    timestamps: list[datetime]
    values: list[float]

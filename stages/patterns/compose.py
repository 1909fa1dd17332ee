"""Compositions: a baseline plus overlays, evaluated at arbitrary timestamps.

This is the library that synthesis and the orchestrator call in-process for every metric value
they emit, so ``evaluate`` of one timestamp must stay in the microseconds; the HTTP service on
8001 serves the same functions.

How a value is put together at time t:

1. ``baseline`` + every ``additive`` component;
2. + the ``noise`` components, scaled by the product of the ``factor`` of every
   ``variance_change`` active at t (plus the variance windows' own ``extra_sigma`` noise);
3. clipped to [low, high] when they are set;
4. an active ``dropout`` replaces the result with its ``level`` (after clipping, so a dropout to
   0 reads 0 even when ``low`` is above 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, model_validator

from stages.common.errors import Unprocessable
from stages.common.vocabulary import Shape
from stages.patterns.shapes import (
    KINDS,
    MAX_BURST_RATE,
    MAX_PERIOD_SECONDS,
    MIN_PERIOD_SECONDS,
    Constant,
    DailySeasonality,
    Dropout,
    ExponentialDecay,
    GaussianNoise,
    GaussianSpike,
    LinearTrend,
    Magnitude,
    Oscillation,
    PoissonBursts,
    Ramp,
    RandomWalk,
    Sawtooth,
    Step,
    VarianceChange,
    WeeklySeasonality,
    lane,
)

PatternKind = Literal[
    "constant", "gaussian_noise", "random_walk", "daily_seasonality", "weekly_seasonality",
    "linear_trend", "gaussian_spike", "step", "ramp", "sawtooth", "exponential_decay",
    "poisson_bursts", "dropout", "variance_change", "oscillation",
]  # fmt: skip

Component = Annotated[
    Constant
    | GaussianNoise
    | RandomWalk
    | DailySeasonality
    | WeeklySeasonality
    | LinearTrend
    | GaussianSpike
    | Step
    | Ramp
    | Sawtooth
    | ExponentialDecay
    | PoissonBursts
    | Dropout
    | VarianceChange
    | Oscillation,
    Field(discriminator="kind"),
]
COMPONENT_ADAPTER: TypeAdapter[Component] = TypeAdapter(Component)
KIND_MODELS: dict[str, type[BaseModel]] = {
    model.model_fields["kind"].default: model for model in KINDS
}
MAX_COMPONENTS = 32
SHAPES: tuple[str, ...] = get_args(Shape)


def parse_component(data: object) -> Component:
    """A component from a dict such as ``{"kind": "ramp", "start": ..., ...}``."""
    return COMPONENT_ADAPTER.validate_python(data)


class Composition(BaseModel):
    """A baseline plus up to 32 components, optionally clipped to [low, high]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: Magnitude = Field(description="The level every component is added to.")
    components: list[Component] = Field(default_factory=list, max_length=MAX_COMPONENTS)
    low: Magnitude | None = Field(None, description="Values below are clipped up to it.")
    high: Magnitude | None = Field(None, description="Values above are clipped down to it.")

    # (role, component index, component) worked out once: evaluate runs per emitted value.
    _roles: list[tuple[str, int, Any]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _low_not_above_high(self) -> Composition:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low}) must not be above high ({self.high})")
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._roles = [(part.role, index, part) for index, part in enumerate(self.components)]


def evaluate(composition: Composition, timestamps: Sequence[float], seed: int = 0) -> list[float]:
    """The composition's value at each timestamp (epoch seconds).

    Deterministic: the same composition, timestamp and seed give the same value, whichever other
    timestamps are in the same call.
    """
    additive, noise, variance, overrides = _keyed_by_role(composition, seed)
    baseline, low, high = composition.baseline, composition.low, composition.high
    values: list[float] = []
    for t in timestamps:
        total = baseline
        for part, key in additive:
            total += part.value(t, key)
        if noise or variance:
            total += _noise_at(t, noise, variance)
        if low is not None and total < low:
            total = low
        if high is not None and total > high:
            total = high
        for window, _ in overrides:
            if window.active(t):
                total = window.level
        values.append(total)
    return values


Keyed = list[tuple[Any, int]]


def _keyed_by_role(composition: Composition, seed: int) -> tuple[Keyed, Keyed, Keyed, Keyed]:
    """Components grouped by role, each with the key of its own random stream.

    The key depends on the seed and the component's position, so two noise components of one
    composition are independent, and adding a component does not reshuffle the others.
    """
    groups: dict[str, Keyed] = {"additive": [], "noise": [], "variance": [], "override": []}
    for role, index, part in composition._roles:
        groups[role].append((part, _cached_lane(seed, index)))
    return groups["additive"], groups["noise"], groups["variance"], groups["override"]


@lru_cache(maxsize=65_536)
def _cached_lane(seed: int, index: int) -> int:
    return lane(seed, index)


def _noise_at(t: float, noise: Keyed, variance: Keyed) -> float:
    scale = 1.0
    extra = 0.0
    for window, key in variance:
        if window.active(t):
            scale *= window.factor
            extra += window.value(t, key)
    total = 0.0
    for part, key in noise:
        total += part.value(t, key)
    return scale * total + extra


def anomaly_component(shape: str, start: float, end: float, magnitude: float) -> Component:
    """The overlay for an anomaly over [start, end) (epoch seconds), 0 outside the window.

    ``magnitude`` is the additive change at the anomaly's peak (negative for a drop). How each
    shape uses it:

    - gaussian_spike: bell curve peaking at ``magnitude`` mid-window;
    - ramp: 0 at start, ``magnitude`` at end; step: ``magnitude`` throughout;
    - sawtooth: four teeth rising to ``magnitude``;
    - oscillation: six cycles of amplitude ``magnitude``;
    - exponential_decay: ``magnitude`` at start, half-life of a quarter of the window;
    - poisson_bursts: bursts of ``magnitude``, a twentieth of the window long, five expected;
    - variance_change: adds noise with sigma = |magnitude|/3, so ~99.7 % of values stay within
      ±magnitude of normal (it needs no baseline, unlike a multiplier would);
    - dropout: the value is 0 inside the window; ``magnitude`` is ignored.
    """
    if shape not in SHAPES:
        raise Unprocessable(f"unknown anomaly shape {shape!r}", detail={"valid": sorted(SHAPES)})
    if not start < end:
        raise Unprocessable(f"an anomaly window needs start < end (got {start} >= {end})")
    return _overlay(shape, start, end, magnitude)


def _overlay(shape: str, start: float, end: float, magnitude: float) -> Component:
    length = end - start
    match shape:
        case "gaussian_spike":
            return GaussianSpike(start=start, end=end, magnitude=magnitude)
        case "ramp":
            return Ramp(start=start, end=end, magnitude=magnitude)
        case "step":
            return Step(start=start, end=end, magnitude=magnitude)
        case "sawtooth":
            return Sawtooth(
                start=start, end=end, magnitude=magnitude, period_seconds=_period(length / 4)
            )
        case "oscillation":
            return Oscillation(
                start=start, end=end, amplitude=magnitude, period_seconds=_period(length / 6)
            )
        case "exponential_decay":
            return ExponentialDecay(
                start=start, end=end, magnitude=magnitude, half_life_seconds=_period(length / 4)
            )
        case "poisson_bursts":
            return PoissonBursts(
                start=start,
                end=end,
                magnitude=magnitude,
                burst_seconds=_period(length / 20),
                rate_per_hour=min(5 * 3600.0 / length, MAX_BURST_RATE),
            )
        case "variance_change":
            return VarianceChange(start=start, end=end, extra_sigma=abs(magnitude) / 3.0)
        case _:
            return Dropout(start=start, end=end)


def _period(seconds: float) -> float:
    # Millisecond floor: a window of a few ms still yields a valid (if degenerate) shape.
    return min(max(seconds, MIN_PERIOD_SECONDS), MAX_PERIOD_SECONDS)

"""The pattern kinds: one small pydantic model per kind, with its parameters and its maths.

Every kind is a pure function of (parameters, t, seed, component index). Randomness comes from a
counter-based hash of those inputs, never from a sequential RNG, so the value at ``t`` is the
same whether it is evaluated alone or inside a batch of a million timestamps.

Each kind has a ``role`` that tells the composer how to combine it:

- ``additive``: added to the baseline (seasonality, trend, spikes, ...);
- ``noise``: added too, but scaled by any active ``variance_change`` window;
- ``variance``: scales the noise components inside its window and may add its own noise;
- ``override``: replaces the final value inside its window (``dropout``).
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["additive", "noise", "variance", "override"]

# Bounds keep the maths finite (no overflow in exp, no NaN) and reject typos like 1e300.
MAX_ABS_VALUE = 1e12
MAX_EPOCH = 1e11  # year ~5138; anything beyond is a unit mistake (milliseconds for seconds)
MAX_PERIOD_SECONDS = 10 * 365 * 86_400.0
MIN_PERIOD_SECONDS = 1e-3
MAX_BURST_RATE = 3_600_000.0  # bursts per hour: one per millisecond

Magnitude = Annotated[
    float,
    Field(allow_inf_nan=False, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE),
]
NonNegative = Annotated[float, Field(allow_inf_nan=False, ge=0, le=MAX_ABS_VALUE)]
Epoch = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_EPOCH, le=MAX_EPOCH)]
Period = Annotated[float, Field(allow_inf_nan=False, ge=MIN_PERIOD_SECONDS, le=MAX_PERIOD_SECONDS)]

_MASK = (1 << 64) - 1
_TWO_PI = 2.0 * math.pi
_LN2 = math.log(2.0)
_DAY = 86_400.0
_WEEK = 7 * _DAY
_BELL_EDGE = math.exp(-4.5)
_UNIT = 1.0 / (1 << 53)
_UNIT_OPEN = 1.0 / ((1 << 53) + 1)
_UNIT_21 = 1.0 / (1 << 21)
_SQRT3 = math.sqrt(3.0)
_TWO_SQRT3 = 2.0 * _SQRT3


def _mix(x: int) -> int:
    """splitmix64 finaliser: a fast, well-distributed 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def lane(seed: int, index: int) -> int:
    """The key of one component's random stream: hashed once per call, not per value."""
    return _mix(_mix(seed & _MASK) ^ (index * 0x85EBCA77C2B2AE63 & _MASK))


def uniform(key: int, tick: int) -> float:
    """A uniform value in [0, 1) that depends only on the lane key and the tick."""
    return (_mix(key ^ (tick & _MASK)) >> 11) * _UNIT


def standard_normal(key: int, tick: int) -> float:
    """A N(0, 1) value that depends only on the lane key and the tick (Box-Muller)."""
    h = _mix(key ^ (tick & _MASK))
    u1 = ((h >> 11) + 1) * _UNIT_OPEN  # in (0, 1]: log(0) is impossible
    u2 = (h & 0x1FFFFF) * _UNIT_21
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


def unit_variance_uniform(key: int, tick: int) -> float:
    """A uniform value on [-sqrt(3), sqrt(3)) (mean 0, variance 1), cheaper than a normal."""
    return (_mix(key ^ (tick & _MASK)) >> 11) * _UNIT * _TWO_SQRT3 - _SQRT3


class _Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: ClassVar[Role] = "additive"

    def value(self, t: float, key: int) -> float:
        raise NotImplementedError


class _Window(_Kind):
    """A kind active only in [start, end); either side may be open (None)."""

    start: Epoch | None = Field(None, description="Window start, epoch seconds (None: always).")
    end: Epoch | None = Field(None, description="Window end, epoch seconds (None: forever).")

    @model_validator(mode="after")
    def _start_before_end(self) -> _Window:
        if self.start is not None and self.end is not None and not self.start < self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end})")
        return self

    def active(self, t: float) -> bool:
        return (self.start is None or t >= self.start) and (self.end is None or t < self.end)


class _FiniteWindow(_Window):
    """A kind whose shape is defined by its window length, so both ends are required."""

    start: Epoch = Field(description="Window start, epoch seconds.")
    end: Epoch = Field(description="Window end, epoch seconds (after start).")


# --- baseline shapes ----------------------------------------------------------------------------


class Constant(_Kind):
    """Adds a fixed offset."""

    kind: Literal["constant"] = "constant"
    offset: Magnitude = Field(0.0, description="The offset added.")

    def value(self, t: float, key: int) -> float:
        return self.offset


class GaussianNoise(_Kind):
    """Independent N(0, sigma²) noise, one draw per millisecond of t."""

    kind: Literal["gaussian_noise"] = "gaussian_noise"
    role: ClassVar[Role] = "noise"
    sigma: NonNegative = Field(1.0, description="Standard deviation.")

    def value(self, t: float, key: int) -> float:
        return self.sigma * standard_normal(key, math.floor(t * 1000.0))


class RandomWalk(_Kind):
    """A bounded random walk: fractal value noise over a grid of ``step_seconds``.

    Octave k interpolates hashed unit-variance values on a grid of step·2^k with amplitude
    sigma·√(2^k), so the change over n steps grows like sigma·√n (as a random walk's does) up to
    the horizon step·2^(octaves-1), beyond which the walk reverts to the mean. Evaluating one
    timestamp costs ``octaves`` interpolations, whatever t is.
    """

    kind: Literal["random_walk"] = "random_walk"
    role: ClassVar[Role] = "noise"
    sigma: NonNegative = Field(1.0, description="Typical change per step.")
    step_seconds: Period = Field(60.0, description="Grid spacing of the walk, seconds.")
    octaves: int = Field(5, ge=1, le=12, description="Horizon = step_seconds·2^(octaves-1).")

    def value(self, t: float, key: int) -> float:
        total = 0.0
        spacing = self.step_seconds
        amplitude = self.sigma
        for octave in range(self.octaves):
            position = t / spacing
            cell = math.floor(position)
            frac = position - cell
            smooth = frac * frac * (3.0 - 2.0 * frac)
            octave_key = key ^ (octave << 58)
            a = unit_variance_uniform(octave_key, cell)
            b = unit_variance_uniform(octave_key, cell + 1)
            total += amplitude * (a + (b - a) * smooth)
            spacing *= 2.0
            amplitude *= math.sqrt(2.0)
        return total


class DailySeasonality(_Kind):
    """A daily cycle. ``sine``: amplitude·cos, peaking at ``peak_hour``. ``business_hours``:
    0 at night, rising smoothly to ``amplitude`` between ``business_start`` and
    ``business_end`` (local hours, UTC + ``utc_offset_hours``)."""

    kind: Literal["daily_seasonality"] = "daily_seasonality"
    amplitude: Magnitude = Field(1.0, description="Peak change from the baseline.")
    profile: Literal["sine", "business_hours"] = Field("sine", description="Shape of the day.")
    peak_hour: float = Field(14.0, ge=0, lt=24, description="Local hour of the sine's peak.")
    business_start: float = Field(8.0, ge=0, lt=24, description="Local hour the day starts.")
    business_end: float = Field(18.0, gt=0, le=24, description="Local hour the day ends.")
    utc_offset_hours: float = Field(0.0, ge=-12, le=14, description="Local time offset.")

    @model_validator(mode="after")
    def _day_has_length(self) -> DailySeasonality:
        if self.business_end - self.business_start < 1.0:
            raise ValueError("business_end must be at least one hour after business_start")
        return self

    def value(self, t: float, key: int) -> float:
        hour = ((t + self.utc_offset_hours * 3600.0) % _DAY) / 3600.0
        if self.profile == "sine":
            return self.amplitude * math.cos(_TWO_PI * (hour - self.peak_hour) / 24.0)
        return self.amplitude * _business_day(hour, self.business_start, self.business_end)


def _business_day(hour: float, start: float, end: float) -> float:
    """1 inside [start, end], 0 outside, with one-hour cosine shoulders centred on each edge."""

    def rise(x: float) -> float:
        x = min(max(x + 0.5, 0.0), 1.0)
        return 0.5 - 0.5 * math.cos(math.pi * x)

    return rise(hour - start) * rise(end - hour)


class WeeklySeasonality(_Kind):
    """Adds ``amplitude`` on Saturdays and Sundays (local time), 0 on weekdays, with linear
    ``transition_hours`` ramps centred on the week-end's edges. Negative = quieter week-end."""

    kind: Literal["weekly_seasonality"] = "weekly_seasonality"
    amplitude: Magnitude = Field(-1.0, description="Change on the week-end.")
    transition_hours: float = Field(2.0, gt=0, le=24, description="Length of each ramp.")
    utc_offset_hours: float = Field(0.0, ge=-12, le=14, description="Local time offset.")

    def value(self, t: float, key: int) -> float:
        # The epoch began on a Thursday: shifting by 3 days puts Monday 00:00 at 0.
        s = (t + self.utc_offset_hours * 3600.0 + 3 * _DAY) % _WEEK
        half = self.transition_hours * 1800.0
        weekend_start, weekend_end = 5 * _DAY, _WEEK
        if s < half:  # Monday morning: still leaving the previous week-end
            s += _WEEK
        up = min(max((s - (weekend_start - half)) / (2 * half), 0.0), 1.0)
        down = min(max(((weekend_end + half) - s) / (2 * half), 0.0), 1.0)
        return self.amplitude * min(up, down)


class LinearTrend(_Kind):
    """0 before ``start``, then grows by ``slope_per_hour`` each hour."""

    kind: Literal["linear_trend"] = "linear_trend"
    slope_per_hour: Magnitude = Field(1.0, description="Change per hour.")
    start: Epoch = Field(description="Epoch seconds where the trend begins (value 0).")

    def value(self, t: float, key: int) -> float:
        return self.slope_per_hour * max(t - self.start, 0.0) / 3600.0


class Oscillation(_Window):
    """amplitude·sin(2π((t - start)/period + phase)) inside the window."""

    kind: Literal["oscillation"] = "oscillation"
    amplitude: Magnitude = Field(1.0, description="Peak change from the baseline.")
    period_seconds: Period = Field(60.0, description="Length of one cycle, seconds.")
    phase: float = Field(0.0, ge=0, lt=1, description="Fraction of a cycle to shift by.")

    def value(self, t: float, key: int) -> float:
        if not self.active(t):
            return 0.0
        elapsed = t - (self.start or 0.0)
        return self.amplitude * math.sin(_TWO_PI * (elapsed / self.period_seconds + self.phase))


# --- anomaly overlays ---------------------------------------------------------------------------


class GaussianSpike(_FiniteWindow):
    """A bell curve centred in the window (sigma = window/6) that rises from 0 at ``start`` to
    ``magnitude`` mid-window and is back to 0 at ``end``; 0 outside."""

    kind: Literal["gaussian_spike"] = "gaussian_spike"
    magnitude: Magnitude = Field(1.0, description="Change at the peak (may be negative).")

    def value(self, t: float, key: int) -> float:
        if not self.start <= t < self.end:
            return 0.0
        sigma = (self.end - self.start) / 6.0
        z = (t - (self.start + self.end) / 2.0) / sigma
        # Lowered by the bell's value at the edges (z = ±3) and rescaled, so the spike starts
        # and ends at exactly 0 instead of jumping by 1 % of the magnitude.
        return self.magnitude * (math.exp(-0.5 * z * z) - _BELL_EDGE) / (1.0 - _BELL_EDGE)


class Step(_Window):
    """A level shift of ``magnitude`` inside the window."""

    kind: Literal["step"] = "step"
    magnitude: Magnitude = Field(1.0, description="The shift (may be negative).")

    def value(self, t: float, key: int) -> float:
        return self.magnitude if self.active(t) else 0.0


class Ramp(_FiniteWindow):
    """Grows linearly from 0 at ``start`` to ``magnitude`` at ``end``; 0 outside."""

    kind: Literal["ramp"] = "ramp"
    magnitude: Magnitude = Field(1.0, description="Change reached at the end.")

    def value(self, t: float, key: int) -> float:
        if not self.start <= t < self.end:
            return 0.0
        return self.magnitude * (t - self.start) / (self.end - self.start)


class Sawtooth(_FiniteWindow):
    """Climbs from 0 to ``magnitude`` every ``period_seconds`` and drops back (a leak with
    periodic restarts); 0 outside the window."""

    kind: Literal["sawtooth"] = "sawtooth"
    magnitude: Magnitude = Field(1.0, description="Change at the top of each tooth.")
    period_seconds: Period = Field(60.0, description="Length of one tooth, seconds.")

    def value(self, t: float, key: int) -> float:
        if not self.start <= t < self.end:
            return 0.0
        cycle = ((t - self.start) % self.period_seconds) / self.period_seconds
        return self.magnitude * cycle


class ExponentialDecay(_FiniteWindow):
    """Jumps to ``magnitude`` at ``start`` and halves every ``half_life_seconds``; 0 outside."""

    kind: Literal["exponential_decay"] = "exponential_decay"
    magnitude: Magnitude = Field(1.0, description="Change at the start.")
    half_life_seconds: Period = Field(60.0, description="Time to halve, seconds.")

    def value(self, t: float, key: int) -> float:
        if not self.start <= t < self.end:
            return 0.0
        return self.magnitude * math.exp(-_LN2 * (t - self.start) / self.half_life_seconds)


class PoissonBursts(_Window):
    """Bursts of ``magnitude`` lasting ``burst_seconds``, arriving ``rate_per_hour`` times an
    hour on average. Time is cut into burst-long slots; each slot holds a burst with probability
    1 - exp(-rate·burst/3600), drawn from the seed, so bursts are reproducible."""

    kind: Literal["poisson_bursts"] = "poisson_bursts"
    magnitude: Magnitude = Field(1.0, description="Change during a burst.")
    rate_per_hour: float = Field(
        6.0, gt=0, le=MAX_BURST_RATE, allow_inf_nan=False, description="Mean bursts per hour."
    )
    burst_seconds: Period = Field(10.0, description="Length of one burst, seconds.")

    def value(self, t: float, key: int) -> float:
        if not self.active(t):
            return 0.0
        origin = self.start or 0.0
        slot = math.floor((t - origin) / self.burst_seconds)
        chance = 1.0 - math.exp(-self.rate_per_hour * self.burst_seconds / 3600.0)
        return self.magnitude if uniform(key, slot) < chance else 0.0


class VarianceChange(_Window):
    """Inside the window, multiplies every noise component (gaussian_noise, random_walk) by
    ``factor`` and adds N(0, extra_sigma²) noise of its own, so it also works on a composition
    that has no noise component."""

    kind: Literal["variance_change"] = "variance_change"
    role: ClassVar[Role] = "variance"
    factor: NonNegative = Field(1.0, description="Multiplier of the other noise components.")
    extra_sigma: NonNegative = Field(0.0, description="Standard deviation of added noise.")

    def value(self, t: float, key: int) -> float:
        if self.extra_sigma == 0.0 or not self.active(t):
            return 0.0
        return self.extra_sigma * standard_normal(key, math.floor(t * 1000.0))


class Dropout(_Window):
    """Forces the final value to ``level`` (default 0: no data / dead sensor) inside the window,
    after clipping: a flatline at any level when ``level`` is set."""

    kind: Literal["dropout"] = "dropout"
    role: ClassVar[Role] = "override"
    level: Magnitude = Field(0.0, description="The value held inside the window.")

    def value(self, t: float, key: int) -> float:
        return self.level


KINDS: tuple[type[_Kind], ...] = (
    Constant,
    GaussianNoise,
    RandomWalk,
    DailySeasonality,
    WeeklySeasonality,
    LinearTrend,
    GaussianSpike,
    Step,
    Ramp,
    Sawtooth,
    ExponentialDecay,
    PoissonBursts,
    Dropout,
    VarianceChange,
    Oscillation,
)

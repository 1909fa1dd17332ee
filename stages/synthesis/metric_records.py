"""Metric records: every value comes from a Pattern Generator composition.

A value is the catalogue baseline with a daily cycle, the estate's week-end change and noise (a
series grid may ask for another week-end change and a trend); inside an anomaly window, for a
series in the window's scope, the archetype's overlay is added with magnitude (target - baseline) x
intensity/100, where target is the effect's ``peak`` or ``factor`` x baseline. The composition is
clipped to the metric's [low, high].
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from stages.common import estate
from stages.common.estate import METRICS_BY_SERVICE, series_metrics
from stages.common.vocabulary import METRICS, MetricEffect
from stages.patterns import Composition, anomaly_component, evaluate
from stages.synthesis.schemas import series_steps

if TYPE_CHECKING:
    from stages.synthesis.schemas import SynthesizeRequest


class Window(Protocol):
    """The anomaly window an overlay spans (epoch seconds) and its intensity."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def intensity(self) -> float: ...


@dataclass(frozen=True)
class Shape:
    """What a series adds to the daily cycle and noise: a week-end change (fraction of the
    baseline) and a linear trend (fraction of the baseline per day, 0 at ``trend_origin``)."""

    weekly_amplitude: float = 0.0
    trend_per_day: float = 0.0
    trend_origin: float = 0.0


# Metric records without a grid (live traffic): the estate's week-end change, as a history's grid
# has by default, and no trend.
LIVE = Shape(weekly_amplitude=estate.WEEKLY_AMPLITUDE)


@dataclass(frozen=True)
class MetricSlot:
    """One metric record to make: which series, when, and the anomaly that applies, if any."""

    position: int
    service: str
    host: str
    metric: str
    timestamp: float
    effect: MetricEffect | None = None
    window: Window | None = None
    shape: Shape = LIVE


def series_grid_size(req: SynthesizeRequest) -> int:
    """Records of a request's series grid: steps x the (service, metric) series."""
    assert req.series is not None
    steps = series_steps(req.spread_seconds, req.series.step_seconds)
    services = req.services or estate.SERVICE_NAMES
    known = [s for s in services if s in METRICS_BY_SERVICE]
    return steps * sum(len(series_metrics(s, req.series.metrics)) for s in known)


def anomaly_magnitude(metric: str, effect: MetricEffect, intensity: float) -> float:
    baseline = METRICS[metric].baseline
    target = effect.peak if effect.peak is not None else effect.factor * baseline
    return (target - baseline) * intensity / 100.0


@lru_cache(maxsize=1024)
def normal_composition(metric: str, shape: Shape = LIVE) -> Composition:
    spec = METRICS[metric]
    b = spec.baseline
    components: list[dict[str, object]] = [
        {"kind": "daily_seasonality", "amplitude": 0.15 * b, "peak_hour": 14.0},
        {"kind": "gaussian_noise", "sigma": 0.04 * b},
    ]
    # Appended after the daily cycle and noise, so their noise streams (keyed by position) stay.
    if shape.weekly_amplitude:
        components.append({"kind": "weekly_seasonality", "amplitude": shape.weekly_amplitude * b})
    if shape.trend_per_day:
        components.append(
            {
                "kind": "linear_trend",
                "slope_per_hour": shape.trend_per_day * b / 24.0,
                "start": shape.trend_origin,
            }
        )
    return Composition(baseline=b, components=components, low=spec.low, high=spec.high)


def anomalous_composition(
    metric: str, effect: MetricEffect, window: Window, shape: Shape = LIVE
) -> Composition:
    base = normal_composition(metric, shape)
    overlay = anomaly_component(
        effect.shape, window.start, window.end, anomaly_magnitude(metric, effect, window.intensity)
    )
    return Composition(
        baseline=base.baseline, components=[*base.components, overlay], low=base.low, high=base.high
    )


def series_seed(seed: int, service: str, host: str, metric: str) -> int:
    """Each (host, metric) series has its own noise, stable for a given request seed."""
    return zlib.crc32(f"{seed}|{service}|{host}|{metric}".encode())


@dataclass(frozen=True)
class MetricValue:
    value: float
    # How much of the anomaly's full magnitude shows in this value (0 outside its shape).
    strength: float = 0.0


def metric_values(slots: list[MetricSlot], seed: int) -> dict[int, MetricValue]:
    """Values for all slots, evaluated one series at a time (one ``evaluate`` call per series
    and anomaly)."""
    groups: dict[tuple[str, str, str, MetricEffect | None, int, Shape], list[MetricSlot]] = (
        defaultdict(list)
    )
    for slot in slots:
        group = (slot.service, slot.host, slot.metric, slot.effect, id(slot.window), slot.shape)
        groups[group].append(slot)
    values: dict[int, MetricValue] = {}
    for (service, host, metric, effect, _, shape), members in groups.items():
        window = members[0].window
        times = [m.timestamp for m in members]
        key = series_seed(seed, service, host, metric)
        normal = evaluate(normal_composition(metric, shape), times, key)
        if effect is None or window is None:
            for member, value in zip(members, normal, strict=True):
                values[member.position] = MetricValue(round(value, 3))
            continue
        shifted = evaluate(anomalous_composition(metric, effect, window, shape), times, key)
        full = abs(anomaly_magnitude(metric, effect, window.intensity)) or 1.0
        for member, plain, value in zip(members, normal, shifted, strict=True):
            strength = min(1.0, abs(value - plain) / full)
            values[member.position] = MetricValue(round(value, 3), strength)
    return values

"""Seasonal baseline: the point against the same time of day (or of the week) in earlier periods.

Each season (a day and a week by default) is cut into slots (5 minutes by default) by the point's
UTC timestamp. A slot keeps, for each of its last ``keep`` periods, the mean of the values seen in
it during that period. The baseline of a point is the median of those means over the *earlier*
periods (so an incident never becomes its own baseline), taken from the longest season whose slot
has at least ``min_periods`` earlier periods: the week once two weeks are known (so a quiet
weekend is normal), else the day. The residual (value - baseline) is then scored like
``robust_z`` against the recent residuals: z = |r - median(r)| / robust sigma(r), score
``squash(z, threshold)``.

This is a seasonal decomposition learned online: constant work per point, state bounded by
slots x ``keep`` whatever the sampling rate, and exact under gaps and irregular sampling (slots
come from timestamps, not positions). A daily peak is normal at its usual hour and anomalous at
03:00. Until a slot has ``min_periods`` earlier days the score is 0.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any, Self

from stages.detection.detectors.base import RollingWindow, check_finite, robust_scale, squash

DAY = 86_400.0
WEEK = 7 * DAY


class _Season:
    """Per-slot means of the last ``keep`` periods of one season."""

    def __init__(self, period: float, slot_seconds: float, keep: int) -> None:
        self.period = period
        self.slot_seconds = slot_seconds
        self.keep = keep
        # slot -> [[period index, sum, count], ...], oldest first
        self.slots: dict[int, deque[list[Any]]] = {}

    def position(self, timestamp: float) -> tuple[int, int]:
        index = math.floor(timestamp / self.period)
        return index, math.floor((timestamp - index * self.period) / self.slot_seconds)

    def baseline(self, index: int, slot: int, min_periods: int) -> float | None:
        means = [total / count for i, total, count in self.slots.get(slot, ()) if i < index]
        return statistics.median(means) if len(means) >= min_periods else None

    def learn(self, index: int, slot: int, value: float) -> None:
        history = self.slots.setdefault(slot, deque(maxlen=self.keep))
        if history and history[-1][0] == index:
            history[-1][1] += value
            history[-1][2] += 1
        else:
            history.append([index, value, 1])

    def state(self) -> dict[str, list[list[Any]]]:
        return {str(slot): [list(e) for e in history] for slot, history in self.slots.items()}

    def restore(self, saved: dict[str, list[list[Any]]]) -> None:
        self.slots = {
            int(slot): deque(([int(i), float(s), int(c)] for i, s, c in entries), maxlen=self.keep)
            for slot, entries in saved.items()
        }


class SeasonalBaseline:
    kind = "seasonal"

    def __init__(
        self,
        slot_seconds: float = 300.0,
        keep_days: int = 7,
        keep_weeks: int = 4,
        min_periods: int = 2,
        residual_window: int = 512,
        residual_warmup: int = 32,
        threshold: float = 3.5,
    ) -> None:
        if not 0 < slot_seconds <= DAY or keep_days < 1 or keep_weeks < 0:
            raise ValueError("seasonal needs 0 < slot_seconds <= a day, keep_days >= 1")
        if not 1 <= min_periods <= keep_days or not 2 <= residual_warmup <= residual_window:
            raise ValueError("seasonal needs 1 <= min_periods <= keep_days, 2 <= warmup <= window")
        self.params = {
            "slot_seconds": slot_seconds,
            "keep_days": keep_days,
            "keep_weeks": keep_weeks,
            "min_periods": min_periods,
            "residual_window": residual_window,
            "residual_warmup": residual_warmup,
            "threshold": threshold,
        }
        # Longest season first: it wins as soon as it knows enough.
        self.seasons = [_Season(WEEK, slot_seconds, keep_weeks)] if keep_weeks else []
        self.seasons.append(_Season(DAY, slot_seconds, keep_days))
        self.min_periods = min_periods
        self.residual_warmup = residual_warmup
        self.threshold = threshold
        self.residuals = RollingWindow(residual_window)

    def update(self, timestamp: float, value: float) -> float:
        value = check_finite(value)
        positions = [season.position(float(timestamp)) for season in self.seasons]
        baseline = None
        for season, (index, slot) in zip(self.seasons, positions, strict=True):
            baseline = season.baseline(index, slot, self.min_periods)
            if baseline is not None:
                break
        score = 0.0
        if baseline is not None:
            residual = value - baseline
            if len(self.residuals) >= self.residual_warmup:
                center = self.residuals.median()
                z = abs(residual - center) / robust_scale(self.residuals.array(), center)
                score = squash(z, self.threshold)
            self.residuals.push(residual)
        for season, (index, slot) in zip(self.seasons, positions, strict=True):
            season.learn(index, slot, value)
        return score

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": dict(self.params),
            # JSON object keys are strings; entries are [period index, sum, count].
            "seasons": [season.state() for season in self.seasons],
            "residuals": self.residuals.values(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(**state["params"])
        for season, saved in zip(detector.seasons, state["seasons"], strict=True):
            season.restore(saved)
        detector.residuals = RollingWindow(detector.residuals.size, state["residuals"])
        return detector

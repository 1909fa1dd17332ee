"""Seasonal baseline: the point against the same time of day on previous days.

The period (a day by default) is cut into slots (5 minutes by default) by the point's UTC
timestamp. Each slot keeps its last ``per_slot`` values with the index of the period they came
from; the baseline of a point is the median of its slot's values from *earlier* periods (so an
incident never becomes its own baseline), once at least ``min_periods`` earlier periods were
seen. The residual (value - baseline) is then scored like ``robust_z`` against the recent
residuals: z = |r - median(r)| / robust sigma(r), score ``squash(z, threshold)``.

This is a seasonal decomposition learned online: O(per_slot) work per point, exact for gaps and
irregular sampling (slots come from timestamps, not from positions). A daily peak is normal at its
usual hour and anomalous at 03:00. Until a slot has ``min_periods`` earlier periods the score is 0.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Self

import numpy as np

from stages.detection.detectors.base import RollingWindow, check_finite, robust_scale, squash


class SeasonalBaseline:
    kind = "seasonal"

    def __init__(
        self,
        period_seconds: float = 86_400.0,
        slot_seconds: float = 300.0,
        per_slot: int = 96,
        min_periods: int = 2,
        residual_window: int = 512,
        residual_warmup: int = 32,
        threshold: float = 3.5,
    ) -> None:
        if not 0 < slot_seconds <= period_seconds:
            raise ValueError("seasonal needs 0 < slot_seconds <= period_seconds")
        if per_slot < 1 or min_periods < 1 or not 2 <= residual_warmup <= residual_window:
            raise ValueError(
                "seasonal needs per_slot >= 1, min_periods >= 1, 2 <= warmup <= window"
            )
        self.period_seconds = float(period_seconds)
        self.slot_seconds = float(slot_seconds)
        self.per_slot = per_slot
        self.min_periods = min_periods
        self.residual_warmup = residual_warmup
        self.threshold = threshold
        self.slots: dict[int, deque[tuple[int, float]]] = {}
        self.residuals = RollingWindow(residual_window)

    def _position(self, timestamp: float) -> tuple[int, int]:
        period = math.floor(timestamp / self.period_seconds)
        slot = math.floor((timestamp - period * self.period_seconds) / self.slot_seconds)
        return period, slot

    def _baseline(self, period: int, slot: int) -> float | None:
        history = self.slots.get(slot)
        if not history:
            return None
        earlier = [value for index, value in history if index < period]
        if len({index for index, _ in history if index < period}) < self.min_periods:
            return None
        return float(np.median(earlier))

    def update(self, timestamp: float, value: float) -> float:
        value = check_finite(value)
        period, slot = self._position(float(timestamp))
        score = 0.0
        baseline = self._baseline(period, slot)
        if baseline is not None:
            residual = value - baseline
            if len(self.residuals) >= self.residual_warmup:
                center = self.residuals.median()
                z = abs(residual - center) / robust_scale(self.residuals.array(), center)
                score = squash(z, self.threshold)
            self.residuals.push(residual)
        history = self.slots.setdefault(slot, deque(maxlen=self.per_slot))
        history.append((period, value))
        return score

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": {
                "period_seconds": self.period_seconds,
                "slot_seconds": self.slot_seconds,
                "per_slot": self.per_slot,
                "min_periods": self.min_periods,
                "residual_window": self.residuals.size,
                "residual_warmup": self.residual_warmup,
                "threshold": self.threshold,
            },
            # JSON object keys are strings; pairs are [period index, value].
            "slots": {
                str(slot): [list(p) for p in history] for slot, history in self.slots.items()
            },
            "residuals": self.residuals.values(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(**state["params"])
        detector.slots = {
            int(slot): deque(((int(i), float(v)) for i, v in pairs), maxlen=detector.per_slot)
            for slot, pairs in state["slots"].items()
        }
        detector.residuals = RollingWindow(detector.residuals.size, state["residuals"])
        return detector

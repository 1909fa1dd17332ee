"""IQR fences (Tukey): how far a point lies outside the interquartile range of the window.

d = max(Q1 - x, x - Q3) / IQR over the last ``window`` points before x. Tukey calls a point past
1.5 IQR an outlier and past 3 IQR "far out"; the score is ``squash(d - 1.5, 1.5)``: 0 inside the
inner fences, 0.5 at the outer (far-out) fence. When the IQR is 0 (more than half the window is one
value) the robust sigma of ``base.robust_scale`` times 1.349 (the IQR of a normal) stands in.
"""

from __future__ import annotations

from typing import Any, Self

from stages.detection.detectors.base import RollingWindow, check_finite, robust_scale, squash

_NORMAL_IQR_IN_SIGMAS = 1.349


class IQRFences:
    kind = "iqr"

    def __init__(
        self, window: int = 256, warmup: int = 32, k: float = 1.5, threshold: float = 1.5
    ) -> None:
        if not 4 <= warmup <= window:
            raise ValueError("iqr needs 4 <= warmup <= window")
        self.window = RollingWindow(window)
        self.warmup = warmup
        self.k = k
        self.threshold = threshold

    def update(self, timestamp: float, value: float) -> float:
        value = check_finite(value)
        score = 0.0
        if len(self.window) >= self.warmup:
            q1 = self.window.quantile(0.25)
            q3 = self.window.quantile(0.75)
            iqr = q3 - q1
            if iqr <= 0.0:
                median = self.window.median()
                iqr = robust_scale(self.window.array(), median) * _NORMAL_IQR_IN_SIGMAS
            distance = max(q1 - value, value - q3) / iqr
            score = squash(distance - self.k, self.threshold)
        self.window.push(value)
        return score

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": {
                "window": self.window.size,
                "warmup": self.warmup,
                "k": self.k,
                "threshold": self.threshold,
            },
            "window": self.window.values(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(**state["params"])
        detector.window = RollingWindow(detector.window.size, state["window"])
        return detector

"""Rolling robust z-score: how many robust sigmas a point lies from the median of the window.

z = |x - median| / (1.4826 * MAD) over the last ``window`` points before x (see
``base.robust_scale`` for the fallbacks when the MAD is 0); the score is ``squash(z, threshold)``,
0.5 at z = 3.5 (Iglewicz and Hoaglin's cut-off for the modified z-score). A spike scores high at
once; a level shift scores high until half the window has seen the new level.
"""

from __future__ import annotations

from typing import Any, Self

from stages.detection.detectors.base import RollingWindow, check_finite, robust_scale, squash


class RobustZ:
    kind = "robust_z"

    def __init__(self, window: int = 256, warmup: int = 32, threshold: float = 3.5) -> None:
        if not 2 <= warmup <= window:
            raise ValueError("robust_z needs 2 <= warmup <= window")
        self.window = RollingWindow(window)
        self.warmup = warmup
        self.threshold = threshold

    def update(self, timestamp: float, value: float) -> float:
        value = check_finite(value)
        score = 0.0
        if len(self.window) >= self.warmup:
            median = self.window.median()
            z = abs(value - median) / robust_scale(self.window.array(), median)
            score = squash(z, self.threshold)
        self.window.push(value)
        return score

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": {
                "window": self.window.size,
                "warmup": self.warmup,
                "threshold": self.threshold,
            },
            "window": self.window.values(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(**state["params"])
        detector.window = RollingWindow(detector.window.size, state["window"])
        return detector

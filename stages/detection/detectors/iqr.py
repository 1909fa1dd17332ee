"""IQR fences (Tukey): how far a point lies outside the interquartile range of the window.

d = max(Q1 - x, x - Q3) / IQR over the last ``window`` points before x. Tukey calls a point past
1.5 IQR an outlier and past 3 IQR "far out"; the score is ``squash(d - 1.5, 1.5)``: 0 inside the
inner fences, 0.5 at the outer (far-out) fence. When the IQR is 0 (more than half the window is one
value) the robust sigma of ``base.robust_scale`` times 1.349 (the IQR of a normal) stands in.
"""

from __future__ import annotations

from stages.detection.detectors.base import WindowDetector, robust_scale, squash

_NORMAL_IQR_IN_SIGMAS = 1.349


class IQRFences(WindowDetector):
    kind = "iqr"

    def __init__(
        self, window: int = 256, warmup: int = 32, k: float = 1.5, threshold: float = 1.5
    ) -> None:
        if not 4 <= warmup <= window:
            raise ValueError("iqr needs 4 <= warmup <= window")
        super().__init__(window, warmup, k=k, threshold=threshold)
        self.k = k
        self.threshold = threshold

    def score(self, value: float) -> float:
        q1 = self.window.quantile(0.25)
        q3 = self.window.quantile(0.75)
        iqr = q3 - q1
        if iqr <= 0.0:
            median = self.window.median()
            iqr = robust_scale(self.window.array(), median) * _NORMAL_IQR_IN_SIGMAS
        distance = max(q1 - value, value - q3) / iqr
        return squash(distance - self.k, self.threshold)

"""Rolling robust z-score: how many robust sigmas a point lies from the median of the window.

z = |x - median| / (1.4826 * MAD) over the last ``window`` points before x (see
``base.robust_scale`` for the fallbacks when the MAD is 0); the score is ``squash(z, threshold)``,
0.5 at z = 3.5 (Iglewicz and Hoaglin's cut-off for the modified z-score). A spike scores high at
once; a level shift scores high until half the window has seen the new level.
"""

from __future__ import annotations

from stages.detection.detectors.base import WindowDetector, robust_scale, squash


class RobustZ(WindowDetector):
    kind = "robust_z"

    def __init__(self, window: int = 256, warmup: int = 32, threshold: float = 3.5) -> None:
        if not 2 <= warmup <= window:
            raise ValueError("robust_z needs 2 <= warmup <= window")
        super().__init__(window, warmup, threshold=threshold)
        self.threshold = threshold

    def score(self, value: float) -> float:
        median = self.window.median()
        z = abs(value - median) / robust_scale(self.window.array(), median)
        return squash(z, self.threshold)

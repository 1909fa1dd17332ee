"""The detector interface and the numerical helpers the detectors share.

A detector sees one series, one point at a time, in time order. ``update(timestamp, value)``
scores the point against what the detector learned from the points before it, then learns the
point, and returns a score in [0, 1]: 0 is normal, 0.5 is the detector's own anomaly threshold,
1 is as anomalous as the detector can say. During its warm-up (too little history to judge) a
detector returns 0 and only learns. ``state()`` is a JSON-ready dict holding everything the
detector learned; ``from_state(state)`` rebuilds a detector that scores the following points
exactly as the original would have.

Every raw statistic (a robust z, a distance beyond a fence, a saliency ratio) is mapped to [0, 1]
by ``squash``: 0 at or below 0, 0.5 at the detector's threshold, rising monotonically towards 1
(``1 - 2 ** -((x / threshold) ** 3)``: 0.12 at 0.5x the threshold, 0.87 at 1.5x, 0.998 at 2x).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

# 1 / Phi^-1(3/4): makes the median absolute deviation a consistent estimator of a normal sigma.
MAD_TO_SIGMA = 1.4826
# sqrt(pi / 2): the same for the mean absolute deviation (used when more than half the window
# is one value and the MAD is 0, as Iglewicz and Hoaglin's modified z-score does).
MEAN_AD_TO_SIGMA = 1.2533
_SQUASH_POWER = 3.0


def squash(x: float, threshold: float) -> float:
    """Map a raw statistic to [0, 1]: 0 for x <= 0, 0.5 at ``threshold``, monotonic, -> 1."""
    x = float(x)  # a numpy scalar would leak into states and events
    if not x > 0.0:  # also catches NaN
        return 0.0
    if math.isinf(x):
        return 1.0
    return 1.0 - 2.0 ** (-((x / threshold) ** _SQUASH_POWER))


def robust_scale(values: np.ndarray, center: float) -> float:
    """A sigma estimate that survives outliers: 1.4826 MAD, else 1.2533 mean AD, else a floor.

    The floor (1e-9 of the magnitude, at least 1e-12) keeps a perfectly constant history from
    dividing by zero: any departure from it is then an unmistakable anomaly.
    """
    deviations = np.abs(values - center)
    mad = float(np.median(deviations)) * MAD_TO_SIGMA
    if mad > 0.0:
        return mad
    mean_ad = float(deviations.mean()) * MEAN_AD_TO_SIGMA
    if mean_ad > 0.0:
        return mean_ad
    return max(abs(center) * 1e-9, 1e-12)


class RollingWindow:
    """The last ``size`` values in arrival order, also kept sorted for O(log n) quantiles."""

    __slots__ = ("_order", "_sorted", "size")

    def __init__(self, size: int, values: Iterable[float] = ()) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        self.size = size
        self._order: deque[float] = deque()
        self._sorted: list[float] = []
        for value in values:
            self.push(value)

    def __len__(self) -> int:
        return len(self._order)

    def push(self, value: float) -> None:
        if len(self._order) == self.size:
            old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._order.append(value)
        bisect.insort(self._sorted, value)

    def quantile(self, q: float) -> float:
        """Linear interpolation between order statistics (numpy's default method)."""
        data = self._sorted
        position = q * (len(data) - 1)
        low = math.floor(position)
        high = min(low + 1, len(data) - 1)
        return data[low] + (data[high] - data[low]) * (position - low)

    def median(self) -> float:
        return self.quantile(0.5)

    def array(self) -> np.ndarray:
        return np.asarray(self._sorted, dtype=float)

    def values(self) -> list[float]:
        """The values oldest first (what ``state()`` stores)."""
        return list(self._order)


@runtime_checkable
class Detector(Protocol):
    """One series, one point at a time (see the module docstring for the contract)."""

    kind: str

    def update(self, timestamp: float, value: float) -> float:
        """Score ``value`` at ``timestamp`` (epoch seconds) against the past, then learn it."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything learned so far, JSON-ready."""
        ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """A detector that goes on exactly where the one that wrote ``state`` stopped."""
        ...


@runtime_checkable
class VectorDetector(Protocol):
    """Like ``Detector``, for several signals of one service observed at the same timestamp."""

    kind: str

    def update(self, timestamp: float, values: Sequence[float]) -> float: ...

    def state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self: ...


class WindowDetector:
    """A detector that scores each point against the last ``window`` points before it.

    Subclasses say how far a point lies from the window (``score``); the warm-up, the learning
    and the state (the parameters and the window, oldest first) are the same for all of them.
    """

    kind: str

    def __init__(self, window: int, warmup: int, **params: float) -> None:
        self.window = RollingWindow(window)
        self.warmup = warmup
        self.params: dict[str, Any] = {"window": window, "warmup": warmup, **params}

    def score(self, value: float) -> float:
        raise NotImplementedError

    def update(self, timestamp: float, value: float) -> float:
        value = check_finite(value)
        score = self.score(value) if len(self.window) >= self.warmup else 0.0
        self.window.push(value)
        return score

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params), "window": self.window.values()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(**state["params"])
        detector.window = RollingWindow(detector.window.size, state["window"])
        return detector


def check_finite(value: float) -> float:
    """Detectors learn only real numbers; a gap must be skipped by the caller, not learned."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return value

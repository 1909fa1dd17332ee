"""Spectral Residual (Ren et al., "Time-Series Anomaly Detection Service at Microsoft", KDD 2019).

Over the last ``window`` points (the current one included), extended by ``extend`` estimated
points so the current point is not at the edge of the transform: A = |FFT(x)|, L = log A, the
spectral residual R = L - moving_average(L, ``avg_filter``), and the saliency map
S = |IFFT(exp(R + i * phase))|. The raw statistic is the paper's ratio
(S_t - mean(S over the previous ``score_window`` points)) / that mean, and the score is
``squash(ratio, threshold)``, 0.5 at a ratio of 6: the paper's threshold of 3 is passed by about
1 % of the points of plain white noise, a ratio of 6 by fewer than 1 in 1,000, while a spike
reaches 10 and more. numpy does the FFTs: one
forward and one inverse transform of ``window + extend`` points per update.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Self

import numpy as np

from stages.detection.detectors.base import check_finite, squash

_EPS = 1e-8


def saliency_map(values: np.ndarray, avg_filter: int) -> np.ndarray:
    spectrum = np.fft.fft(values)
    amplitude = np.abs(spectrum)
    log_amplitude = np.log(np.maximum(amplitude, _EPS))
    kernel = np.ones(avg_filter) / avg_filter
    # Edge-padded so the first and last frequencies are averaged over as many bins as the others.
    padded = np.pad(log_amplitude, (avg_filter // 2, avg_filter - 1 - avg_filter // 2), mode="edge")
    residual = log_amplitude - np.convolve(padded, kernel, mode="valid")
    phase = spectrum / np.maximum(amplitude, _EPS)
    return np.abs(np.fft.ifft(np.exp(residual) * phase))


def extend_series(values: np.ndarray, extend: int, lookback: int = 5) -> np.ndarray:
    """Append ``extend`` copies of the paper's next-point estimate.

    The estimate is x[n-m] + m * g, g the mean slope from each of the ``lookback`` = m points
    before the current one to the point just before it: the current point is left out so that a
    spike does not drag the extension up with it and hide itself.
    """
    tail = values[-lookback - 2 : -1]
    steps = np.arange(len(tail) - 1, 0, -1)
    slope_sum = float(np.sum((tail[-1] - tail[:-1]) / steps))
    estimate = tail[1] + slope_sum
    return np.concatenate([values, np.full(extend, estimate)])


class SpectralResidual:
    kind = "spectral_residual"

    def __init__(
        self,
        window: int = 64,
        extend: int = 5,
        avg_filter: int = 3,
        score_window: int = 21,
        threshold: float = 6.0,
    ) -> None:
        if window < max(score_window + 1, 8) or extend < 1 or avg_filter < 1:
            raise ValueError("spectral_residual needs window > score_window, extend >= 1")
        self.window = window
        self.extend = extend
        self.avg_filter = avg_filter
        self.score_window = score_window
        self.threshold = threshold
        self.buffer: deque[float] = deque(maxlen=window)

    def update(self, timestamp: float, value: float) -> float:
        self.buffer.append(check_finite(value))
        if len(self.buffer) < self.window:
            return 0.0
        values = np.asarray(self.buffer, dtype=float)
        level = float(values.mean())
        if float(np.ptp(values)) <= 1e-12 * (1.0 + abs(level)):
            return 0.0  # a flat window has no spectrum to speak of
        # The transform does not care about the level; removing it keeps the DC bin from
        # dwarfing the rest of the spectrum for series far from zero.
        values = values - level
        saliency = saliency_map(extend_series(values, self.extend), self.avg_filter)
        current = saliency[self.window - 1]
        local = float(saliency[self.window - 1 - self.score_window : self.window - 1].mean())
        ratio = (current - local) / max(local, _EPS)
        return squash(ratio, self.threshold)

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": {
                "window": self.window,
                "extend": self.extend,
                "avg_filter": self.avg_filter,
                "score_window": self.score_window,
                "threshold": self.threshold,
            },
            "buffer": list(self.buffer),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(**state["params"])
        detector.buffer.extend(float(v) for v in state["buffer"])
        return detector

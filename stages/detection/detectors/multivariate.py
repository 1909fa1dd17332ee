"""Robust Mahalanobis distance across several signals of one service.

Each signal is standardised by its own median and robust sigma over the last ``window`` vectors
(so a latency in ms and an error rate in [0, 1] weigh alike); the correlation between the
standardised signals is estimated from the same window with every coordinate clipped to
±``clip``, then re-estimated twice without the window's points that lie beyond the 97.5th
percentile of the estimate before (the reweighting step of robust covariance estimators), so a
past incident along a direction of low variance does not inflate that variance and hide the next
one; it is finally shrunk towards the diagonal. The point's
squared distance D² = zᵀ C⁻¹ z is chi-square with d degrees of freedom for normal data: the
score is ``squash(D, T)`` with T = sqrt(chi2 quantile(``p``, d)) (Wilson-Hilferty), so a point
at the 99.9th percentile of normal data scores 0.5. It sees what no univariate detector sees:
signals that are each within their range but no longer move together (latency up while
throughput is flat). The fit (center, scales, correlation) is refreshed every ``refit_every``
vectors and kept in the state, so a restart scores as an uninterrupted run would.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any, Self

import numpy as np

from stages.detection.detectors.base import MAD_TO_SIGMA, MEAN_AD_TO_SIGMA, squash


def chi2_quantile(p: float, dof: int) -> float:
    """Wilson-Hilferty: (chi2_dof / dof)^(1/3) is close to normal; within 1 % for dof >= 2."""
    z = NormalDist().inv_cdf(p)
    h = 2.0 / (9.0 * dof)
    return dof * (1.0 - h + z * math.sqrt(h)) ** 3


def column_scales(matrix: np.ndarray, center: np.ndarray) -> np.ndarray:
    """``base.robust_scale`` for each column at once."""
    deviations = np.abs(matrix - center)
    scales = np.median(deviations, axis=0) * MAD_TO_SIGMA
    fallback = deviations.mean(axis=0) * MEAN_AD_TO_SIGMA
    scales = np.where(scales > 0.0, scales, fallback)
    floor = np.maximum(np.abs(center) * 1e-9, 1e-12)
    return np.maximum(scales, floor)


class RobustMahalanobis:
    kind = "multivariate"

    def __init__(
        self,
        dimensions: int,
        window: int = 256,
        warmup: int = 64,
        clip: float = 3.5,
        shrinkage: float = 0.1,
        p: float = 0.999,
        refit_every: int = 16,
    ) -> None:
        if dimensions < 1 or not dimensions + 2 <= warmup <= window:
            raise ValueError(
                "multivariate needs dimensions >= 1, dimensions + 2 <= warmup <= window"
            )
        if not 0.0 <= shrinkage <= 1.0 or not 0.5 < p < 1.0 or refit_every < 1:
            raise ValueError(
                "multivariate needs 0 <= shrinkage <= 1, 0.5 < p < 1 and refit_every >= 1"
            )
        self.dimensions = dimensions
        self.warmup = warmup
        self.clip = clip
        self.shrinkage = shrinkage
        self.p = p
        self.threshold = math.sqrt(chi2_quantile(p, dimensions))
        self.inlier_cutoff = chi2_quantile(0.975, dimensions)
        self.buffer: deque[tuple[float, ...]] = deque(maxlen=window)
        self.refit_every = refit_every
        # The last fit (center, scale, covariance) and the points scored with it since.
        self.fit: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.since_fit = 0

    def _covariance(self, standard: np.ndarray) -> np.ndarray:
        covariance = np.atleast_2d(np.cov(standard, rowvar=False))
        diagonal = np.diag(np.diag(covariance))
        covariance = (1.0 - self.shrinkage) * covariance + self.shrinkage * diagonal
        return covariance + np.eye(self.dimensions) * 1e-6

    def update(self, timestamp: float, values: Sequence[float]) -> float:
        point = np.asarray(values, dtype=float)
        if point.shape != (self.dimensions,):
            raise ValueError(f"expected {self.dimensions} values, got {point.size}")
        if not np.all(np.isfinite(point)):
            raise ValueError(f"not finite numbers: {list(values)!r}")
        score = 0.0
        if len(self.buffer) >= self.warmup:
            if self.fit is None or self.since_fit >= self.refit_every:
                self.fit = self._fit()
                self.since_fit = 0
            center, scale, covariance = self.fit
            self.since_fit += 1
            z = (point - center) / scale
            distance = math.sqrt(max(float(z @ np.linalg.solve(covariance, z)), 0.0))
            score = squash(distance, self.threshold)
        self.buffer.append(tuple(float(v) for v in point))
        return score

    def _fit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Center, scales and robust correlation of the window. Refitting every
        ``refit_every`` points instead of every point changes a 256-point estimate by a few
        points and costs a sixteenth of the time: it was most of a service's scoring time."""
        history = np.asarray(self.buffer)
        center = np.median(history, axis=0)
        scale = column_scales(history, center)
        standard = np.clip((history - center) / scale, -self.clip, self.clip)
        covariance = self._covariance(standard)
        for _ in range(2):
            distances = np.einsum("ij,ij->i", standard, np.linalg.solve(covariance, standard.T).T)
            inliers = standard[distances <= self.inlier_cutoff]
            if len(inliers) > self.dimensions + 1:
                covariance = self._covariance(inliers)
        return center, scale, covariance

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": {
                "dimensions": self.dimensions,
                "window": self.buffer.maxlen,
                "warmup": self.warmup,
                "clip": self.clip,
                "shrinkage": self.shrinkage,
                "p": self.p,
                "refit_every": self.refit_every,
            },
            "buffer": [list(v) for v in self.buffer],
            "fit": [a.tolist() for a in self.fit] if self.fit is not None else None,
            "since_fit": self.since_fit,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(**state["params"])
        detector.buffer.extend(tuple(float(x) for x in v) for v in state["buffer"])
        fit = state.get("fit")
        if fit is not None:
            center, scale, covariance = (np.asarray(a, dtype=float) for a in fit)
            detector.fit = (center, scale, np.atleast_2d(covariance))
        detector.since_fit = int(state.get("since_fit", 0))
        return detector

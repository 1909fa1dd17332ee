"""Synthetic series with one known anomaly, built from a seed (the same seed, the same series)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

T0 = 1_700_006_400.0  # a UTC midnight, so slot arithmetic in the tests is easy to follow
STEP = 300.0  # five minutes, like most of the public corpora
DAY_POINTS = int(86_400 / STEP)
WEEK_SECONDS = 7 * 86_400


@dataclass(frozen=True)
class Labelled:
    timestamps: np.ndarray
    values: np.ndarray
    start: int  # first anomalous index
    end: int  # one past the last anomalous index

    @property
    def normal(self) -> np.ndarray:
        """Indices of the normal points before the anomaly."""
        return np.arange(0, self.start)


def _noise(n: int, seed: int, sigma: float = 2.0, level: float = 100.0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0.0, sigma, n)


def _times(n: int) -> np.ndarray:
    return T0 + np.arange(n) * STEP


def spike(n: int = 1500, at: int = 1200, height: float = 25.0, seed: int = 1) -> Labelled:
    values = _noise(n, seed)
    values[at] += height
    return Labelled(_times(n), values, at, at + 1)


def level_shift(n: int = 1500, at: int = 1200, shift: float = 20.0, seed: int = 2) -> Labelled:
    values = _noise(n, seed)
    values[at:] += shift
    # The onset is the anomaly; once the new level is the norm, it is no longer one.
    return Labelled(_times(n), values, at, at + 10)


def step(n: int = 1500, at: int = 1200, length: int = 20, height: float = 15.0, seed: int = 3):
    values = _noise(n, seed)
    values[at : at + length] += height
    return Labelled(_times(n), values, at, at + length)


def variance_change(n: int = 1500, at: int = 1200, length: int = 100, seed: int = 4) -> Labelled:
    values = _noise(n, seed)
    values[at : at + length] = _noise(length, seed + 100, sigma=12.0)
    return Labelled(_times(n), values, at, at + length)


def daily(
    days: int = 6, amplitude: float = 30.0, sigma: float = 2.0, seed: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    n = days * DAY_POINTS
    times = _times(n)
    phase = 2 * np.pi * ((times - T0) % 86_400) / 86_400
    return times, _noise(n, seed, sigma) + amplitude * np.sin(phase)


def off_season(days: int = 6, seed: int = 5) -> Labelled:
    """A daily cycle; on the last day the trough hours carry the usual peak level."""
    times, values = daily(days, seed=seed)
    trough = (days - 1) * DAY_POINTS + int(0.75 * DAY_POINTS)  # 18:00, sin at its minimum
    values[trough : trough + 6] += 60.0  # the level of 06:00, at 18:00
    return Labelled(times, values, trough, trough + 6)

"""Pacing on a monotonic schedule (tick n is due at start + n * interval, so no drift builds up)
and rate measurement over the whole run and over the last few seconds."""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class Schedule:
    def __init__(self, interval: float, start: float, total_ticks: int | None = None) -> None:
        self.interval = interval
        self.start = start
        self.total_ticks = total_ticks
        self.done = 0  # ticks produced or skipped

    def next_due(self) -> float:
        return self.start + self.done * self.interval

    def finished(self) -> bool:
        return self.total_ticks is not None and self.done >= self.total_ticks

    def due_count(self, now: float) -> int:
        """Ticks due by ``now`` and not yet taken (bounded by the run's total)."""
        due = math.floor((now - self.start) / self.interval) + 1
        if self.total_ticks is not None:
            due = min(due, self.total_ticks)
        return max(0, due - self.done)

    def advance(self, ticks: int) -> None:
        self.done += ticks


class RateMeter:
    """Records produced over time; thread-safe because the stats endpoint reads it."""

    def __init__(self, window_seconds: float = 10.0) -> None:
        self.window_seconds = window_seconds
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, count: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._events.append((now, count))
            self._trim(now)

    def recent_rate(self, started: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            total = sum(count for _, count in self._events)
        span = min(self.window_seconds, now - started)
        return total / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window_seconds:
            self._events.popleft()

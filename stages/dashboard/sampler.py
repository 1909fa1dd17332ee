"""Throughput and lag over time for the live charts, sampled from the consumer's metrics.

A daemon thread scrapes the consumer every few seconds; rates are the difference of its counters
between two scrapes. Samples live in a bounded ring buffer, so memory stays flat however long the
dashboard runs. A scrape that fails is a gap (None values), never a zero that looks like an idle
pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stages.dashboard.consumer import ConsumerMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    at: float  # unix seconds
    records_in_per_s: dict[str, float | None]  # stream -> rate
    records_out_per_s: float | None
    objects_per_s: float | None
    max_lag_ms: dict[str, float | None]  # stream -> max millis behind over its shards


class Sampler:
    def __init__(
        self,
        scrape: Callable[[], ConsumerMetrics | None],
        streams: tuple[str, ...],
        *,
        period: float,
        capacity: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scrape = scrape
        self.streams = streams
        self.period = period
        self.clock = clock
        self.samples: deque[Sample] = deque(maxlen=capacity)
        self._previous: tuple[float, ConsumerMetrics] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dashboard-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # a bad scrape must not end the charts
                log.exception("sampling the consumer failed")
            self._stop.wait(self.period)

    def sample_once(self) -> Sample:
        now = self.clock()
        current = self.scrape()
        sample = self._make_sample(now, current)
        with self._lock:
            self.samples.append(sample)
        self._previous = (now, current) if current is not None else None
        return sample

    def _make_sample(self, now: float, current: ConsumerMetrics | None) -> Sample:
        if current is None:
            empty: dict[str, float | None] = {s: None for s in self.streams}
            return Sample(now, empty, None, None, dict(empty))
        lag: dict[str, float | None] = {}
        for stream in self.streams:
            values = [v for (s, _), v in current.millis_behind.items() if s == stream]
            lag[stream] = max(values) if values else None
        if self._previous is None:
            return Sample(now, {s: None for s in self.streams}, None, None, lag)
        then, before = self._previous
        elapsed = max(now - then, 1e-6)

        def rate(name: str, stream: str | None = None) -> float:
            new, old = current.total(name, stream), before.total(name, stream)
            # A restarted consumer starts its counters again from zero.
            return (new - old if new >= old else new) / elapsed

        return Sample(
            now,
            {s: rate("records_in", s) for s in self.streams},
            rate("records_out"),
            rate("objects_written"),
            lag,
        )

    def latest(self) -> Sample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def series(self, limit: int) -> dict[str, Any]:
        """Column-wise series (what uPlot draws): times, then one list per line."""
        with self._lock:
            samples = list(self.samples)[-limit:]
        return {
            "period_seconds": self.period,
            "t": [round(s.at, 3) for s in samples],
            "records_in_per_s": {
                stream: [s.records_in_per_s.get(stream) for s in samples] for stream in self.streams
            },
            "records_out_per_s": [s.records_out_per_s for s in samples],
            "objects_per_s": [s.objects_per_s for s in samples],
            "max_lag_ms": {
                stream: [s.max_lag_ms.get(stream) for s in samples] for stream in self.streams
            },
        }

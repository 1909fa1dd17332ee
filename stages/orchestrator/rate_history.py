"""A bounded history of the generated rate, for the control panel's chart.

Rates come from deltas of the process's ``orchestrator_records_produced_total`` counter, which
only grows (executions that are forgotten from the API still counted when they ran), so the
history is exact whatever happens to the runs themselves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from stages.orchestrator import metrics

SAMPLE_SECONDS = 1.0
MAX_SAMPLES = 900  # 15 minutes at one sample a second

# source label -> records produced so far
Totals = Callable[[], dict[str, float]]


@dataclass(frozen=True)
class RateSample:
    """Records per second produced by each source between the previous sample and ``at``."""

    at: float  # Unix time, seconds
    continuous: float
    execution: float

    @property
    def total(self) -> float:
        return self.continuous + self.execution


def produced_totals() -> dict[str, float]:
    """Records produced per source label, read from the Prometheus counter."""
    totals: dict[str, float] = {}
    for family in metrics.RECORDS_PRODUCED.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                source = sample.labels.get("source", "")
                totals[source] = totals.get(source, 0.0) + sample.value
    return totals


class RateHistory:
    """Turns successive counter readings into per-interval rates, keeping the last
    ``max_samples``. ``sample`` is called by one timer; ``recent`` by any request thread."""

    def __init__(
        self,
        totals: Totals = produced_totals,
        clock: Callable[[], float] = time.time,
        max_samples: int = MAX_SAMPLES,
    ) -> None:
        self._totals = totals
        self._clock = clock
        self._samples: deque[RateSample] = deque(maxlen=max_samples)
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, float]] | None = None

    def sample(self) -> RateSample | None:
        """Read the counters; the first reading only sets the baseline and returns None."""
        now, totals = self._clock(), self._totals()
        previous, self._last = self._last, (now, totals)
        if previous is None or now <= previous[0]:
            return None
        elapsed = now - previous[0]
        sample = RateSample(
            at=now,
            continuous=_rate(previous[1], totals, "continuous", elapsed),
            execution=_rate(previous[1], totals, "execution", elapsed),
        )
        with self._lock:
            self._samples.append(sample)
        return sample

    def recent(self, seconds: float) -> list[RateSample]:
        """Samples of the last ``seconds``, oldest first."""
        since = self._clock() - seconds
        with self._lock:
            return [s for s in self._samples if s.at >= since]


def _rate(before: dict[str, float], after: dict[str, float], source: str, elapsed: float) -> float:
    # max(): a counter never goes down; guard anyway so a chart never shows a negative rate.
    return max(0.0, after.get(source, 0.0) - before.get(source, 0.0)) / elapsed

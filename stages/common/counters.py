"""Counters whose one store is Prometheus: /metrics is scraped from it, and the readable views
(the JSON stats endpoints, the status page, ``KinesisProducer.stats()``) are read back from it,
so the two can never disagree.

Prometheus counts per process. A view counts per owner (one app, one producer) by starting from
the counters' values when the owner was made; two owners of the same counters alive at once in
one process (tests may build an app twice) would see each other's counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import Counter

# Prometheus counters live in one process-wide registry; an app built twice in one process (tests)
# reuses them instead of failing on a duplicate name.
_registered: dict[str, Counter] = {}
_registered_lock = threading.Lock()


def _prometheus_counter(name: str, help_text: str) -> Counter:
    with _registered_lock:
        if name not in _registered:
            _registered[name] = Counter(name, help_text)
        return _registered[name]


def counter_total(counter: Counter) -> float:
    """The value of a counter, or of one labelled child (``counter.labels(...)``)."""
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                return sample.value
    return 0.0


def counter_totals_by_labels(counter: Counter) -> list[tuple[dict[str, str], float]]:
    """Each labelled child's value, with its labels."""
    return [
        (dict(sample.labels), sample.value)
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    ]


class CounterReadings:
    """Named readings of Prometheus counters: each is the increase, since the readings were
    made, of the sum of its counters (e.g. calls = the ok, partial and error children)."""

    def __init__(self, sources: Mapping[str, Sequence[Counter]]) -> None:
        self._sources = {name: tuple(counters) for name, counters in sources.items()}
        self._baseline = {name: self._total(counters) for name, counters in self._sources.items()}

    @staticmethod
    def _total(counters: Sequence[Counter]) -> float:
        return sum(counter_total(counter) for counter in counters)

    def snapshot(self) -> dict[str, int]:
        return {
            name: round(self._total(counters) - self._baseline[name])
            for name, counters in self._sources.items()
        }


class OutcomeCounters:
    """Named monotonic counters; Prometheus names are ``<prefix>_<name>_total``."""

    def __init__(self, prefix: str, names: Iterable[str], help_text: str = "") -> None:
        self._prometheus = {
            name: _prometheus_counter(f"{prefix}_{name}", help_text or name) for name in names
        }
        self._readings = CounterReadings({name: (c,) for name, c in self._prometheus.items()})

    def inc(self, name: str, amount: int = 1) -> None:
        if amount <= 0:
            return
        self._prometheus[name].inc(amount)

    def snapshot(self) -> dict[str, int]:
        return self._readings.snapshot()

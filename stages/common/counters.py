"""Outcome counters kept twice: as Prometheus counters for /metrics and as a plain dict for the
JSON APIs and the status page, so both always show the same numbers."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import Counter

# Prometheus counters live in one process-wide registry; an app built twice in one process (tests)
# reuses them instead of failing on a duplicate name. They count for the process, the dict per app.
_registered: dict[str, Counter] = {}
_registered_lock = threading.Lock()


def _prometheus_counter(name: str, help_text: str) -> Counter:
    with _registered_lock:
        if name not in _registered:
            _registered[name] = Counter(name, help_text)
        return _registered[name]


class OutcomeCounters:
    """Named monotonic counters; Prometheus names are ``<prefix>_<name>_total``."""

    def __init__(self, prefix: str, names: Iterable[str], help_text: str = "") -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._prometheus: dict[str, Counter] = {}
        for name in names:
            self._values[name] = 0
            self._prometheus[name] = _prometheus_counter(f"{prefix}_{name}", help_text or name)

    def inc(self, name: str, amount: int = 1) -> None:
        if amount <= 0:
            return
        with self._lock:
            self._values[name] += amount
        self._prometheus[name].inc(amount)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

"""Counters for everything synthesis does: Prometheus for scraping, a snapshot for the status
page. One module so that the domain code counts without knowing about HTTP."""

from __future__ import annotations

import threading
from collections import Counter as _Tally
from typing import Any

from prometheus_client import Counter

RECORDS = Counter("synthesis_records_total", "Records generated", ["kind", "anomalous"])
REQUESTS = Counter("synthesis_requests_total", "Synthesize requests answered", ["outcome"])
FORWARD_BATCHES = Counter(
    "synthesis_forward_batches_total", "Chunks sent to ingestion, by outcome", ["outcome"]
)
FORWARDED = Counter("synthesis_forwarded_records_total", "Records ingestion accepted")
FORWARD_FAILED = Counter(
    "synthesis_forward_failed_records_total",
    "Records not accepted by ingestion after all retries (the caller got a 503 or 502)",
)
RESENT = Counter(
    "synthesis_resent_records_total",
    "Records sent again under an idempotency key after an attempt that did not get them in "
    "(counted in forward_failed then)",
)
UNSENT_DROPPED = Counter(
    "synthesis_unsent_records_dropped_total",
    "Records kept for an idempotent retry, dropped unsent at the bound or when their key "
    "expired (a later retry makes new ones)",
)
STATE_UNAVAILABLE = Counter(
    "synthesis_state_unavailable_total",
    "State Manager calls that failed; synthesis used generated or cached ids instead",
)


class Stats:
    """Totals for the status page (Prometheus counters are not meant to be read back)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tally: _Tally[str] = _Tally()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._tally[name] += amount

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(sorted(self._tally.items()))


STATS = Stats()


def count_records(kind: str, anomalous: bool, amount: int) -> None:
    if amount:
        RECORDS.labels(kind, "true" if anomalous else "false").inc(amount)
        STATS.add(f"records_{kind}{'_anomalous' if anomalous else ''}", amount)

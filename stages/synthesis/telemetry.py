"""Counters for everything synthesis does, in Prometheus; the status page's totals are read back
from them. One module so that the domain code counts without knowing about HTTP."""

from __future__ import annotations

from prometheus_client import Counter

from stages.common.counters import counter_total, counter_totals_by_labels

RECORDS = Counter("synthesis_records_total", "Records generated", ["kind", "anomalous"])
REQUESTS = Counter("synthesis_requests_total", "Synthesize requests answered", ["outcome"])
RESUMED = Counter(
    "synthesis_requests_resumed_total",
    "Requests under an idempotency key that continued what an earlier attempt started",
)
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
    """Totals for the status page, read back from the counters above (only those above 0)."""

    def snapshot(self) -> dict[str, int]:
        totals: dict[str, float] = {}
        for labels, value in counter_totals_by_labels(RECORDS):
            anomalous = "_anomalous" if labels["anomalous"] == "true" else ""
            totals[f"records_{labels['kind']}{anomalous}"] = value
        requests = _by_label(REQUESTS, "outcome")
        batches = _by_label(FORWARD_BATCHES, "outcome")
        totals |= {
            "requests": requests.get("ok", 0),
            "requests_failed": requests.get("error", 0),
            "requests_replayed": requests.get("replayed", 0),
            "requests_resumed": counter_total(RESUMED),
            "records_resent": counter_total(RESENT),
            "forwarded": counter_total(FORWARDED),
            "forward_retries": batches.get("retried", 0),
            "forward_failed": counter_total(FORWARD_FAILED),
            "unsent_records_dropped": counter_total(UNSENT_DROPPED),
            "state_unavailable": counter_total(STATE_UNAVAILABLE),
        }
        return {name: round(value) for name, value in sorted(totals.items()) if value}


def _by_label(counter: Counter, label: str) -> dict[str, float]:
    # Read from the samples rather than through .labels(), which would create (and expose) a
    # zero child for an outcome that never happened.
    return {labels[label]: value for labels, value in counter_totals_by_labels(counter)}


STATS = Stats()


def count_records(kind: str, anomalous: bool, amount: int) -> None:
    if amount:
        RECORDS.labels(kind, "true" if anomalous else "false").inc(amount)

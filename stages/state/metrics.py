"""The State Manager's Prometheus counters, also shown on its status page."""

from __future__ import annotations

from prometheus_client import Counter

CREATED = Counter("state_entities_created_total", "Entities created over the API", ["type"])
SEEDED = Counter("state_entities_seeded_total", "Entities inserted by the first-start seed")
TRANSITIONS = Counter(
    "state_transitions_total",
    "Transition requests by entity type and outcome (applied, noop, invalid, unknown_state)",
    ["type", "outcome"],
)
STORAGE_ERRORS = Counter(
    "state_storage_errors_total", "SQLite failures answered with a 503 (callers retry)"
)


def total(counter: Counter, **labels: str) -> int:
    """Sum of a counter's samples whose labels include ``labels``."""
    return int(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
            and all(sample.labels.get(k) == v for k, v in labels.items())
        )
    )

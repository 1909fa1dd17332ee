"""The Pattern Generator's Prometheus counters, also shown on its status page."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

EVALUATIONS = Counter("patterns_evaluations_total", "Range evaluations served over HTTP")
POINTS = Counter("patterns_points_total", "Values computed for HTTP range evaluations")
REJECTED = Counter(
    "patterns_rejected_total", "Requests refused with a 4xx by the domain checks", ["reason"]
)


def _total(counter: Counter) -> int:
    return int(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


def status_counters() -> dict[str, Any]:
    return {
        "range evaluations": _total(EVALUATIONS),
        "points computed": _total(POINTS),
        "requests rejected": _total(REJECTED),
    }

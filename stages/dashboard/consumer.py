"""What the real Kinesis consumer says about itself: its /health and its Prometheus /metrics.

Nothing here is assumed: when the consumer does not answer, its state is "unreachable"; when it
answers 503, "unhealthy" with the reason it gave.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from stages.dashboard.metrics import PROBE_FAILURES

PROBE_TIMEOUT_SECONDS = 2.0
# The series the dashboard reads from the consumer's /metrics.
_TOTALS = {
    "consumer_records_in_total": "records_in",
    "consumer_records_out_total": "records_out",
    "consumer_objects_written_total": "objects_written",
    "consumer_dead_letters_total": "dead_letters",
}


@dataclass
class ConsumerMetrics:
    """Per-stream totals and per-shard lag parsed from one /metrics scrape."""

    totals: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> stream -> value
    millis_behind: dict[tuple[str, str], float] = field(default_factory=dict)  # (stream, shard)

    def total(self, name: str, stream: str | None = None) -> float:
        by_stream = self.totals.get(name, {})
        return by_stream.get(stream, 0.0) if stream else sum(by_stream.values())


def parse_metrics(text: str) -> ConsumerMetrics:
    parsed = ConsumerMetrics()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "consumer_millis_behind_latest":
                shard = (sample.labels.get("stream", ""), sample.labels.get("shard", ""))
                parsed.millis_behind[shard] = sample.value
            elif sample.name in _TOTALS:
                stream = sample.labels.get("stream", "")
                parsed.totals.setdefault(_TOTALS[sample.name], {})[stream] = sample.value
    return parsed


class ConsumerProbe:
    def __init__(self, base_url: str, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=PROBE_TIMEOUT_SECONDS)

    def close(self) -> None:
        self.client.close()

    def status(self) -> dict[str, Any]:
        """The consumer's state (running / unhealthy / unreachable) and its health details."""
        checked_at = time.time()
        try:
            response = self.client.get(f"{self.base_url}/health")
        except httpx.HTTPError as exc:
            PROBE_FAILURES.labels("consumer").inc()
            return {
                "state": "unreachable",
                "url": self.base_url,
                "checked_at": checked_at,
                "reason": f"{type(exc).__name__}: {exc}"[:300],
                "health": None,
            }
        health = _json_or_none(response)
        if response.status_code == 200:
            state, reason = "running", None
        else:
            state = "unhealthy"
            reason = (health or {}).get("reason") or f"/health answered {response.status_code}"
        return {
            "state": state,
            "url": self.base_url,
            "checked_at": checked_at,
            "reason": reason,
            "health": health,
        }

    def metrics(self) -> ConsumerMetrics | None:
        """The consumer's metrics, or None when it cannot be scraped."""
        try:
            response = self.client.get(f"{self.base_url}/metrics")
            response.raise_for_status()
            return parse_metrics(response.text)
        except (httpx.HTTPError, ValueError):
            PROBE_FAILURES.labels("consumer_metrics").inc()
            return None


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None

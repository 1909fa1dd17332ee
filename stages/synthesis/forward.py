"""Forwarding to the Ingestion Interface in chunks, with bounded retries.

Ingestion answers 200 only when a chunk is durably accepted and 503 + Retry-After when it cannot
be. A chunk is retried (with backoff, honouring Retry-After) until the request's retry budget is
spent; then the caller gets a 503 that says how many records were forwarded, so nothing is
dropped without someone knowing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from stages.synthesis.errors import IngestionRejected, IngestionUnavailable
from stages.synthesis.telemetry import FORWARD_BATCHES, FORWARD_FAILED, FORWARDED, STATS

log = logging.getLogger(__name__)

CHUNK = 500
# Callers wait at most 10 s for an answer (common.http.DEFAULT_TIMEOUT): give up early enough
# that they get the 503 with the forwarded count instead of a timeout that hides it.
RETRY_BUDGET_SECONDS = 6.0
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 2.0
RETRYABLE = frozenset({429, 500, 502, 503, 504})
BATCH_PATH = "/api/ingest/batch"


class Forwarder:
    def __init__(
        self,
        client: httpx.Client,
        *,
        budget_seconds: float = RETRY_BUDGET_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._budget = budget_seconds
        self._sleep = sleep
        self._clock = clock

    def forward(self, records: Sequence[dict[str, Any]]) -> int:
        """Send every record; returns how many ingestion accepted, or raises with that count."""
        deadline = self._clock() + self._budget
        forwarded = 0
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            try:
                self._send_chunk(chunk, deadline)
            except IngestionUnavailable as exc:
                self._count_failure(len(records) - forwarded)
                raise IngestionUnavailable(
                    forwarded, len(records), exc.reason, exc.retry_after
                ) from None
            except IngestionRejected:
                self._count_failure(len(records) - forwarded)
                raise
            forwarded += len(chunk)
            FORWARDED.inc(len(chunk))
            STATS.add("forwarded", len(chunk))
        return forwarded

    def _send_chunk(self, chunk: Sequence[dict[str, Any]], deadline: float) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        while True:
            wait, reason = self._attempt(chunk)
            if reason is None:
                FORWARD_BATCHES.labels("accepted").inc()
                return
            FORWARD_BATCHES.labels("retried").inc()
            STATS.add("forward_retries")
            pause = max(backoff, wait)
            if self._clock() + pause > deadline:
                FORWARD_BATCHES.labels("gave_up").inc()
                raise IngestionUnavailable(0, len(chunk), reason, max(1.0, wait))
            self._sleep(pause)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _attempt(self, chunk: Sequence[dict[str, Any]]) -> tuple[float, str | None]:
        """(seconds to wait, reason) after a failed attempt; (0, None) when accepted."""
        try:
            resp = self._client.post(BATCH_PATH, json={"records": list(chunk)})
        except httpx.HTTPError as exc:
            return 0.0, f"{type(exc).__name__} talking to ingestion"
        if resp.status_code == 200:
            return 0.0, None
        if resp.status_code in RETRYABLE:
            return _retry_after(resp), f"ingestion answered {resp.status_code}"
        FORWARD_BATCHES.labels("rejected").inc()
        raise IngestionRejected(
            f"ingestion rejected a chunk with {resp.status_code}",
            detail={"ingestion_status": resp.status_code, "ingestion_body": resp.text[:2000]},
        )

    @staticmethod
    def _count_failure(records: int) -> None:
        FORWARD_FAILED.inc(records)
        STATS.add("forward_failed", records)


def _retry_after(resp: httpx.Response) -> float:
    try:
        return min(float(resp.headers.get("Retry-After", "0")), MAX_BACKOFF_SECONDS * 2)
    except ValueError:
        return 0.0

"""Forwarding to the Ingestion Interface in chunks, with bounded retries.

Ingestion answers 200 only when a chunk is durably accepted and 503 + Retry-After when it cannot
be. A chunk is retried (with backoff, honouring Retry-After) until the request's retry budget is
spent; then the caller gets a 503 that says how many records were forwarded, so nothing is
dropped without someone knowing.

Up to ``MAX_IN_FLIGHT`` chunks of one call are on the wire at once: ingestion serves
concurrent batches several times faster than one after another (its Kinesis round trip, not its
CPU, bounds a single client). A failed chunk stops the ones not yet sent, and the count a
failure reports is exactly the chunks ingestion accepted, in whatever order they finished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import orjson

from stages.synthesis.errors import IngestionRejected, IngestionUnavailable
from stages.synthesis.telemetry import FORWARD_BATCHES, FORWARD_FAILED, FORWARDED, STATS

log = logging.getLogger(__name__)

CHUNK = 500
# Callers wait at most 10 s for an answer (common.http.DEFAULT_TIMEOUT): give up early enough
# that they get the 503 with the forwarded count instead of a timeout that hides it.
RETRY_BUDGET_SECONDS = 6.0
MIN_ATTEMPT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 1.0
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 2.0
RETRYABLE = frozenset({429, 500, 502, 503, 504})
BATCH_PATH = "/api/ingest/batch"
# Shared by all calls of one Forwarder, so concurrent synthesize requests together still keep at
# most this many chunks in flight towards ingestion.
MAX_IN_FLIGHT = 4
_JSON_HEADERS = {"content-type": "application/json"}


class Forwarder:
    def __init__(
        self,
        client: httpx.Client,
        *,
        budget_seconds: float = RETRY_BUDGET_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._client = client
        self._budget = budget_seconds
        self._sleep = sleep
        self._clock = clock
        self._pool = (
            ThreadPoolExecutor(max_in_flight, thread_name_prefix="forward")
            if max_in_flight > 1
            else None
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def forward(self, records: Sequence[dict[str, Any]]) -> int:
        """Send every record; returns how many ingestion accepted, or raises with that count."""
        accepted, error = self.forward_some(records)
        if error is None:
            return len(accepted)
        if isinstance(error, IngestionUnavailable):
            raise IngestionUnavailable(len(accepted), len(records), error.reason, error.retry_after)
        raise error

    def forward_some(
        self, records: Sequence[dict[str, Any]], *, started: float | None = None
    ) -> tuple[list[dict[str, Any]], Exception | None]:
        """(the records ingestion accepted, why it did not take them all or None); never
        raises, so a caller always learns which records are in. The budget runs from
        ``started`` (on this forwarder's clock) when the request began earlier than now."""
        deadline = (self._clock() if started is None else started) + self._budget
        chunks = [records[start : start + CHUNK] for start in range(0, len(records), CHUNK)]
        abandon = threading.Event()
        if self._pool is None or len(chunks) == 1:
            outcomes = [self._run_chunk(chunk, deadline, abandon) for chunk in chunks]
        else:
            futures: list[Future[Exception | None]] = [
                self._pool.submit(self._run_chunk, chunk, deadline, abandon) for chunk in chunks
            ]
            # Every future is waited for, even after a failure, so the accepted records below
            # are exactly the chunks ingestion accepted.
            outcomes = [future.result() for future in futures]
        accepted = [
            record
            for chunk, outcome in zip(chunks, outcomes, strict=True)
            if outcome is None
            for record in chunk
        ]
        error = next((o for o in outcomes if o is not None and not isinstance(o, _Skipped)), None)
        if error is not None:
            self._count_failure(len(records) - len(accepted))
        return accepted, error

    def _run_chunk(
        self, chunk: Sequence[dict[str, Any]], deadline: float, abandon: threading.Event
    ) -> Exception | None:
        """None once ingestion accepted the chunk, else why not (never raises)."""
        if abandon.is_set():
            return _Skipped()
        try:
            self._send_chunk(chunk, deadline, abandon)
        except Exception as exc:  # handed to forward(), which raises it in the caller
            abandon.set()
            return exc
        FORWARDED.inc(len(chunk))
        STATS.add("forwarded", len(chunk))
        return None

    def _send_chunk(
        self, chunk: Sequence[dict[str, Any]], deadline: float, abandon: threading.Event
    ) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        while True:
            if self._clock() > deadline:  # e.g. waiting for a pool slot: not sent, so not in
                FORWARD_BATCHES.labels("gave_up").inc()
                raise IngestionUnavailable(0, len(chunk), "the time budget ran out", 1.0)
            wait, reason = self._attempt(chunk, deadline)
            if reason is None:
                FORWARD_BATCHES.labels("accepted").inc()
                return
            FORWARD_BATCHES.labels("retried").inc()
            STATS.add("forward_retries")
            pause = max(backoff, wait)
            # Another chunk of the call already failed: the caller gets a 503 anyway, so this
            # one stops retrying instead of holding the answer until the deadline.
            if self._clock() + pause > deadline or abandon.is_set():
                FORWARD_BATCHES.labels("gave_up").inc()
                raise IngestionUnavailable(0, len(chunk), reason, max(1.0, wait))
            self._sleep(pause)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _attempt(
        self, chunk: Sequence[dict[str, Any]], deadline: float
    ) -> tuple[float, str | None]:
        """(seconds to wait, reason) after a failed attempt; (0, None) when accepted."""
        # A stalled ingestion must not hold one attempt past the budget (the client's own
        # timeout is 10 s): the caller, itself waiting 10 s, would lose the answer.
        left = max(deadline - self._clock(), MIN_ATTEMPT_SECONDS)
        try:
            # orjson: several times faster than httpx's stdlib json for the same bytes' meaning.
            body = orjson.dumps({"records": list(chunk)})
            resp = self._client.post(
                BATCH_PATH,
                content=body,
                headers=_JSON_HEADERS,
                timeout=httpx.Timeout(left, connect=min(left, CONNECT_TIMEOUT_SECONDS)),
            )
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


class _Skipped(Exception):
    """A chunk not sent because another chunk of the same call had already failed."""


def _retry_after(resp: httpx.Response) -> float:
    try:
        return min(float(resp.headers.get("Retry-After", "0")), MAX_BACKOFF_SECONDS * 2)
    except ValueError:
        return 0.0

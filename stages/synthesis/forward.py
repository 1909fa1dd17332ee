"""Forwarding to the Ingestion Interface in chunks, with bounded retries.

Ingestion answers 200 when every valid record of a chunk is durably accepted and 503 +
Retry-After when some are not; either answer says record by record which are in (``results``:
accepted, rejected or retry). A retry re-sends only the chunk's ``retry`` records (they carry
their event_id, so a copy that reached Kinesis after all is dropped by the consumer), with
backoff and honouring Retry-After, until the request's retry budget is spent; then the caller
gets a 503 that says how many records were forwarded, so nothing is dropped without someone
knowing. An answer without per-record results (a proxy's 502, an older ingestion) counts as
nothing accepted on an error status and everything on a 200.

Up to ``MAX_IN_FLIGHT`` chunks of one call are on the wire at once: ingestion serves
concurrent batches several times faster than one after another (its Kinesis round trip, not its
CPU, bounds a single client). A failed chunk stops the ones not yet sent, and the count a
failure reports is exactly the records ingestion accepted, in whatever order they finished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from stages.common.retry import backoff_delay, parse_retry_after
from stages.synthesis.errors import IngestionRejected, IngestionUnavailable
from stages.synthesis.telemetry import FORWARD_BATCHES, FORWARD_FAILED, FORWARDED

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
            futures: list[Future[tuple[list[dict[str, Any]], Exception | None]]] = [
                self._pool.submit(self._run_chunk, chunk, deadline, abandon) for chunk in chunks
            ]
            # Every future is waited for, even after a failure, so the accepted records below
            # are exactly the ones ingestion accepted.
            outcomes = [future.result() for future in futures]
        accepted = [record for taken, _ in outcomes for record in taken]
        error = next(
            (e for _, e in outcomes if e is not None and not isinstance(e, _Skipped)), None
        )
        if error is not None:
            self._count_failure(len(records) - len(accepted))
        return accepted, error

    def _run_chunk(
        self, chunk: Sequence[dict[str, Any]], deadline: float, abandon: threading.Event
    ) -> tuple[list[dict[str, Any]], Exception | None]:
        """(the chunk's records ingestion accepted, None or why not all); never raises."""
        if abandon.is_set():
            return [], _Skipped()
        accepted: list[dict[str, Any]] = []
        error: Exception | None = None
        try:
            self._send_chunk(chunk, deadline, abandon, accepted)
        except Exception as exc:  # handed to forward(), which raises it in the caller
            abandon.set()
            error = exc
        FORWARDED.inc(len(accepted))
        return accepted, error

    def _send_chunk(
        self,
        chunk: Sequence[dict[str, Any]],
        deadline: float,
        abandon: threading.Event,
        accepted: list[dict[str, Any]],
    ) -> None:
        """Send until ingestion accepted every record of ``chunk``, adding those it accepted
        to ``accepted`` as it goes; raises when it gives up or ingestion refuses some."""
        retries = 0
        todo = list(chunk)
        while True:
            if self._clock() > deadline:  # e.g. waiting for a pool slot: not sent, so not in
                FORWARD_BATCHES.labels("gave_up").inc()
                raise IngestionUnavailable(0, len(todo), "the time budget ran out", 1.0)
            answer = self._attempt(todo, deadline)
            accepted += answer.accepted
            if answer.rejected:
                # Sending them again cannot help; the records left to retry are not sent
                # either, and stay unconfirmed for the caller (see idempotency).
                FORWARD_BATCHES.labels("rejected").inc()
                raise IngestionRejected(
                    f"ingestion rejected {len(answer.rejected)} records of a chunk as invalid",
                    detail={"ingestion_status": answer.status, "ingestion_body": answer.body},
                    records=answer.rejected,
                )
            if not answer.retry:
                FORWARD_BATCHES.labels("accepted").inc()
                return
            todo = answer.retry
            FORWARD_BATCHES.labels("retried").inc()
            backoff = backoff_delay(retries, base=FIRST_BACKOFF_SECONDS, cap=MAX_BACKOFF_SECONDS)
            pause = max(backoff, answer.wait)
            # Another chunk of the call already failed: the caller gets a 503 anyway, so this
            # one stops retrying instead of holding the answer until the deadline.
            if self._clock() + pause > deadline or abandon.is_set():
                FORWARD_BATCHES.labels("gave_up").inc()
                raise IngestionUnavailable(0, len(todo), answer.reason, max(1.0, answer.wait))
            self._sleep(pause)
            retries += 1

    def _attempt(self, todo: list[dict[str, Any]], deadline: float) -> _Answer:
        """Post ``todo`` once; what ingestion accepted, refused and left to retry."""
        # A stalled ingestion must not hold one attempt past the budget (the client's own
        # timeout is 10 s): the caller, itself waiting 10 s, would lose the answer.
        left = max(deadline - self._clock(), MIN_ATTEMPT_SECONDS)
        try:
            # orjson: several times faster than httpx's stdlib json for the same bytes' meaning.
            body = orjson.dumps({"records": todo})
            resp = self._client.post(
                BATCH_PATH,
                content=body,
                headers=_JSON_HEADERS,
                timeout=httpx.Timeout(left, connect=min(left, CONNECT_TIMEOUT_SECONDS)),
            )
        except httpx.HTTPError as exc:
            return _Answer(retry=todo, reason=f"{type(exc).__name__} talking to ingestion")
        reason = f"ingestion answered {resp.status_code}"
        if resp.status_code == 200:
            return _per_record(todo, resp, resp.content, default="accepted", reason=reason)
        if resp.status_code in RETRYABLE:
            answer = _per_record(todo, resp, _detail(resp), default="retry", reason=reason)
            answer.wait = _retry_after(resp)
            return answer
        FORWARD_BATCHES.labels("rejected").inc()
        raise IngestionRejected(
            f"ingestion rejected a chunk with {resp.status_code}",
            detail={"ingestion_status": resp.status_code, "ingestion_body": resp.text[:2000]},
            records=todo,
        )

    @staticmethod
    def _count_failure(records: int) -> None:
        FORWARD_FAILED.inc(records)


class _Skipped(Exception):
    """A chunk not sent because another chunk of the same call had already failed."""


@dataclass
class _Answer:
    """One attempt's outcome: the posted records split by what ingestion said of each."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    retry: list[dict[str, Any]] = field(default_factory=list)
    wait: float = 0.0
    reason: str = ""
    status: int = 0
    body: str = ""


def _detail(resp: httpx.Response) -> bytes:
    """The per-record answer of an error body (``{"error", "message", "detail": {...}}``)."""
    try:
        detail = orjson.loads(resp.content).get("detail")
    except (orjson.JSONDecodeError, AttributeError):
        return b""
    return orjson.dumps(detail) if isinstance(detail, dict) else b""


def _per_record(
    todo: list[dict[str, Any]],
    resp: httpx.Response,
    content: bytes,
    *,
    default: str,
    reason: str,
) -> _Answer:
    """Split ``todo`` by ingestion's ``results``. An answer without them (or not about these
    records) counts every record as ``default``: accepted for a 200, retry for an error."""
    statuses = [default] * len(todo)
    try:
        results = orjson.loads(content).get("results") if content else None
    except (orjson.JSONDecodeError, AttributeError):
        results = None
    if isinstance(results, list) and len(results) == len(todo):
        try:
            by_index = {int(r["index"]): str(r["status"]) for r in results}
        except (KeyError, TypeError, ValueError):
            by_index = {}
        if sorted(by_index) == list(range(len(todo))):
            statuses = [by_index[i] for i in range(len(todo))]
    answer = _Answer(reason=reason, status=resp.status_code, body=resp.text[:2000])
    for record, status in zip(todo, statuses, strict=True):
        if status == "accepted":
            answer.accepted.append(record)
        elif status == "rejected":
            answer.rejected.append(record)
        else:
            answer.retry.append(record)
    return answer


def _retry_after(resp: httpx.Response) -> float:
    seconds = parse_retry_after(resp.headers.get("Retry-After"))
    return 0.0 if seconds is None else min(seconds, MAX_BACKOFF_SECONDS * 2)

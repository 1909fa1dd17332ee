"""POSTs request bodies to one endpoint from a bounded queue on a thread of its own, so the
caller never waits for a slow or absent peer; every batch's outcome is counted.

The Ingestion Interface uses it to feed Log Consolidation and Log Consolidation to export to an
OTLP/HTTP collector: both are views of data that is durable elsewhere (Kinesis and the spool;
the local store), so a full queue drops the batch, counted, rather than slowing the caller.

A failed POST is tried again, up to ``attempts`` in all, after the shared backoff of
:mod:`stages.common.retry` (or the peer's ``Retry-After``, capped); an answer the peer would give
again to the same body (``retryable`` says which) ends the batch at once. Outcomes are counted
under the names the caller gives (:class:`OutcomeNames`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from stages.common.counters import OutcomeCounters
from stages.common.retry import backoff_delay, parse_retry_after

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutcomeNames:
    """The caller's counter names for each outcome, counted in records."""

    delivered: str
    retried: str
    failed: str
    dropped: str


@dataclass(frozen=True, slots=True)
class _Batch:
    body: bytes
    records: int


_STOP = _Batch(b"", 0)


def retry_unless_client_error(status: int) -> bool:
    """Any answer but a 4xx may be different next time; of the 4xx, a timeout (408) and
    "too many requests" (429) ask for another attempt later."""
    return not 400 <= status < 500 or status in (408, 429)


class BackgroundPoster:
    """A queue of request bodies and the thread that POSTs them to ``url`` with ``client``.

    The queue is bounded by ``max_bytes`` of bodies (an empty queue still takes one larger
    body, so no batch is too large to ever be sent), by ``max_batches``, or both.
    """

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        counters: OutcomeCounters,
        names: OutcomeNames,
        *,
        name: str,
        max_bytes: int | None = None,
        max_batches: int | None = None,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 5.0,
        retryable: Callable[[int], bool] = retry_unless_client_error,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._client = client
        self._url = url
        self._counters = counters
        self._names = names
        self._name = name
        self._max_bytes = max_bytes
        self._max_batches = max_batches
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._retryable = retryable
        self._headers = headers or {}
        self._queue: queue.Queue[_Batch] = queue.Queue()
        self._lock = threading.Lock()
        self._queued_bytes = 0
        self._queued_batches = 0
        self._stopping = threading.Event()
        self._last_ok: bool | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, body: bytes, records: int) -> bool:
        """Queue a body carrying ``records`` records without waiting; False, and the records
        counted as dropped, when the queue is full or the poster is closing."""
        with self._lock:
            full = self._is_full(len(body))
            if full or self._stopping.is_set():
                self._counters.inc(self._names.dropped, records)
                return False
            self._queued_bytes += len(body)
            self._queued_batches += 1
        self._queue.put_nowait(_Batch(body, records))
        return True

    def _is_full(self, size: int) -> bool:
        if self._max_batches is not None and self._queued_batches >= self._max_batches:
            return True
        if self._max_bytes is None or not self._queued_bytes:
            return False
        return self._queued_bytes + size > self._max_bytes

    def queued_batches(self) -> int:
        with self._lock:
            return self._queued_batches

    def queued_bytes(self) -> int:
        with self._lock:
            return self._queued_bytes

    def reachable(self) -> bool | None:
        """Whether the last batch was delivered (None before the first)."""
        return self._last_ok

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking batches; the one being sent finishes (its retries are cut short) and
        the rest are counted as dropped."""
        self._stopping.set()
        self._queue.put_nowait(_STOP)
        self._thread.join(timeout)

    def _release(self, batch: _Batch) -> None:
        with self._lock:
            self._queued_bytes -= len(batch.body)
            self._queued_batches -= 1

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is _STOP:
                break
            try:
                self._deliver(batch)
            except Exception:
                # The thread must outlive one bad batch, or every later one would be dropped.
                log.exception("%s: delivery failed unexpectedly", self._name)
                self._counters.inc(self._names.failed, batch.records)
            finally:
                self._release(batch)
            if self._stopping.is_set():
                break
        self._count_leftovers_as_dropped()

    def _deliver(self, batch: _Batch) -> None:
        wait = 0.0
        for attempt in range(self._attempts):
            if attempt:
                self._counters.inc(self._names.retried, batch.records)
                if self._stopping.wait(wait):
                    break
            try:
                response = self._client.post(self._url, content=batch.body, headers=self._headers)
            except httpx.HTTPError as exc:
                problem = repr(exc)
                retry_after = None
            else:
                if response.status_code < 300:
                    self._last_ok = True
                    self._counters.inc(self._names.delivered, batch.records)
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if not self._retryable(response.status_code):
                    log.warning("%s: delivery refused: %s", self._name, problem)
                    break
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            log.warning("%s: delivery failed (attempt %d): %s", self._name, attempt + 1, problem)
            wait = backoff_delay(attempt, base=self._backoff, cap=self._max_backoff)
            if retry_after is not None:
                wait = min(retry_after, self._max_backoff)
        self._last_ok = False
        self._counters.inc(self._names.failed, batch.records)

    def _count_leftovers_as_dropped(self) -> None:
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return
            if batch is not _STOP:
                self._counters.inc(self._names.dropped, batch.records)
                self._release(batch)

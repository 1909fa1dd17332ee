"""Hands accepted records to Log Consolidation from a bounded queue on its own thread.

The Kinesis path never waits for this: ``offer`` only enqueues, and a full queue drops the batch
(counted), because Kinesis and the spool are the durable copy and consolidation is a view.

The queue holds each batch as the request body it will be sent as, built from the JSON lines
validation already made, and is bounded in bytes: queued record dicts cost ~3x their JSON, and a
slow consolidation at 10,000 records/s filled a queue bounded in batches with hundreds of MB.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

import httpx

from stages.common.counters import OutcomeCounters

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True, slots=True)
class _Batch:
    body: bytes
    records: int


class ConsolidationForwarder:
    def __init__(
        self,
        client: httpx.Client,
        counters: OutcomeCounters,
        *,
        queue_bytes: int,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
    ) -> None:
        self._client = client
        self._counters = counters
        self._queue: queue.Queue[_Batch | object] = queue.Queue()
        self._queue_bytes = queue_bytes
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._stopping = threading.Event()
        self._last_ok: bool | None = None
        self._thread = threading.Thread(target=self._run, name="consolidation-forward", daemon=True)
        self._thread.start()

    def offer(self, lines: list[bytes]) -> bool:
        """Queue a batch (one JSON line per record) without waiting; False, and counted as
        dropped, when the queue is full or the forwarder is closing.

        An empty queue takes any batch, so one larger than the budget still goes through."""
        body = b'{"records":[' + b",".join(lines) + b"]}"
        with self._queued_lock:
            full = self._queued_bytes and self._queued_bytes + len(body) > self._queue_bytes
            if full or self._stopping.is_set():
                self._counters.inc("consolidation_dropped", len(lines))
                return False
            self._queued_bytes += len(body)
        self._queue.put_nowait(_Batch(body, len(lines)))
        return True

    def _release(self, batch: _Batch) -> None:
        with self._queued_lock:
            self._queued_bytes -= len(batch.body)

    def queued_batches(self) -> int:
        return self._queue.qsize()

    def queued_bytes(self) -> int:
        return self._queued_bytes

    def reachable(self) -> bool | None:
        return self._last_ok

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._queue.put_nowait(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is _STOP:
                return
            try:
                self._deliver(batch)
            except Exception:
                # The thread must outlive one bad batch, or every later one would be dropped.
                log.exception("consolidation delivery failed unexpectedly")
                self._counters.inc("consolidation_failed", batch.records)
            finally:
                self._release(batch)
            if self._stopping.is_set():
                self._count_leftovers_as_dropped()
                return

    def _deliver(self, batch: _Batch) -> None:
        for attempt in range(self._attempts):
            if attempt:
                self._counters.inc("consolidation_retried", batch.records)
                if self._stopping.wait(self._backoff * 2 ** (attempt - 1)):
                    break
            try:
                response = self._client.post(
                    "/api/logs/batch",
                    content=batch.body,
                    headers={"content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                problem = repr(exc)
            else:
                if response.status_code < 300:
                    self._last_ok = True
                    self._counters.inc("consolidation_delivered", batch.records)
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if 400 <= response.status_code < 500:
                    break  # the same body would be refused again
            log.warning("consolidation delivery failed (attempt %d): %s", attempt + 1, problem)
        self._last_ok = False
        self._counters.inc("consolidation_failed", batch.records)

    def _count_leftovers_as_dropped(self) -> None:
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return
            if batch is not _STOP:
                self._counters.inc("consolidation_dropped", batch.records)
                self._release(batch)

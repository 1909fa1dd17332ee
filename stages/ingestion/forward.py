"""Hands accepted records to Log Consolidation from a bounded queue on its own thread.

The Kinesis path never waits for this: ``offer`` only enqueues, and a full queue drops the batch
(counted), because Kinesis and the spool are the durable copy and consolidation is a view.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Any

import httpx
import orjson

from stages.common.counters import OutcomeCounters

log = logging.getLogger(__name__)

_STOP = object()


class ConsolidationForwarder:
    def __init__(
        self,
        client: httpx.Client,
        counters: OutcomeCounters,
        *,
        queue_size: int,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
    ) -> None:
        self._client = client
        self._counters = counters
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._stopping = threading.Event()
        self._last_ok: bool | None = None
        self._thread = threading.Thread(target=self._run, name="consolidation-forward", daemon=True)
        self._thread.start()

    def offer(self, records: list[dict[str, Any]]) -> bool:
        """Queue a batch without waiting; False (and counted as dropped) if the queue is full."""
        try:
            self._queue.put_nowait(records)
        except queue.Full:
            self._counters.inc("consolidation_dropped", len(records))
            return False
        return True

    def queued_batches(self) -> int:
        return self._queue.qsize()

    def reachable(self) -> bool | None:
        return self._last_ok

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is _STOP:
                return
            self._deliver(batch)
            if self._stopping.is_set():
                self._count_leftovers_as_dropped()
                return

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        for attempt in range(self._attempts):
            if attempt:
                self._counters.inc("consolidation_retried", len(records))
                if self._stopping.wait(self._backoff * 2 ** (attempt - 1)):
                    break
            try:
                # orjson: httpx's stdlib json costs ~14x more CPU for the same body.
                response = self._client.post(
                    "/api/logs/batch",
                    content=orjson.dumps({"records": records}),
                    headers={"content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                problem = repr(exc)
            else:
                if response.status_code < 300:
                    self._last_ok = True
                    self._counters.inc("consolidation_delivered", len(records))
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if 400 <= response.status_code < 500:
                    break  # the same body would be refused again
            log.warning("consolidation delivery failed (attempt %d): %s", attempt + 1, problem)
        self._last_ok = False
        self._counters.inc("consolidation_failed", len(records))

    def _count_leftovers_as_dropped(self) -> None:
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return
            if batch is not _STOP:
                self._counters.inc("consolidation_dropped", len(batch))

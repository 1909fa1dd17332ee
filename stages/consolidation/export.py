"""Optional forwarding of consolidated batches to an external OTLP/HTTP endpoint
(``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``), from a bounded queue on its own thread so a slow
collector never slows the local store. Every outcome is counted."""

from __future__ import annotations

import logging
import queue
import threading

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from stages.common.counters import OutcomeCounters

log = logging.getLogger(__name__)

# The OTLP/HTTP spec's retryable answers; anything else 4xx/5xx will not get better.
_RETRYABLE = frozenset({429, 502, 503, 504})
_STOP = b""


class OtlpExporter:
    def __init__(
        self,
        endpoint: str,
        counters: OutcomeCounters,
        *,
        queue_size: int = 1000,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        timeout: float = 10.0,
    ) -> None:
        self._counters = counters
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=2.0),
            headers={"Content-Type": "application/x-protobuf"},
        )
        self._endpoint = endpoint
        self._queue: queue.Queue[tuple[bytes, int]] = queue.Queue(maxsize=queue_size)
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def offer(self, request: ExportLogsServiceRequest, records: int) -> None:
        try:
            self._queue.put_nowait((request.SerializeToString(), records))
        except queue.Full:
            self._counters.inc("export_dropped", records)

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        try:
            self._queue.put_nowait((_STOP, 0))
        except queue.Full:
            log.warning("export queue full at shutdown; unsent batches are counted as dropped")
        self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        while True:
            body, records = self._queue.get()
            if body == _STOP:
                break
            self._send(body, records)
            if self._stopping.is_set():
                break
        self._count_leftovers()

    def _send(self, body: bytes, records: int) -> None:
        for attempt in range(self._attempts):
            if attempt:
                self._counters.inc("export_retried", records)
                if self._stopping.wait(self._backoff * 2 ** (attempt - 1)):
                    break
            try:
                response = self._client.post(self._endpoint, content=body)
            except httpx.HTTPError as exc:
                problem = repr(exc)
            else:
                if response.status_code < 300:
                    self._counters.inc("exported", records)
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code not in _RETRYABLE:
                    break
            log.warning("OTLP export failed (attempt %d): %s", attempt + 1, problem)
        self._counters.inc("export_failed", records)

    def _count_leftovers(self) -> None:
        while True:
            try:
                body, records = self._queue.get_nowait()
            except queue.Empty:
                return
            if body != _STOP:
                self._counters.inc("export_dropped", records)

"""Optional forwarding of consolidated batches to an external OTLP/HTTP endpoint
(``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``), from a bounded queue on its own thread so a slow
collector never slows the local store. Every outcome is counted."""

from __future__ import annotations

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from stages.common.background_post import BackgroundPoster, OutcomeNames
from stages.common.counters import OutcomeCounters

# The OTLP/HTTP spec's retryable answers; anything else 4xx/5xx will not get better.
_RETRYABLE = frozenset({429, 502, 503, 504})
_NAMES = OutcomeNames(
    delivered="exported", retried="export_retried", failed="export_failed", dropped="export_dropped"
)


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
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=2.0))
        self._poster = BackgroundPoster(
            self._client,
            endpoint,
            counters,
            _NAMES,
            name="otlp-export",
            max_batches=queue_size,
            attempts=attempts,
            backoff_seconds=backoff_seconds,
            retryable=_RETRYABLE.__contains__,
            headers={"Content-Type": "application/x-protobuf"},
        )

    def offer(self, request: ExportLogsServiceRequest, records: int) -> None:
        self._poster.offer(request.SerializeToString(), records)

    def close(self, timeout: float = 5.0) -> None:
        self._poster.close(timeout)
        self._client.close()

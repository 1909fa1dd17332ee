"""Hands accepted records to Log Consolidation from a bounded queue on its own thread.

The Kinesis path never waits for this: ``offer`` only enqueues, and a full queue drops the batch
(counted), because Kinesis and the spool are the durable copy and consolidation is a view.

The queue holds each batch as the request body it will be sent as, built from the JSON lines
validation already made, and is bounded in bytes: queued record dicts cost ~3x their JSON, and a
slow consolidation at 10,000 records/s filled a queue bounded in batches with hundreds of MB.
"""

from __future__ import annotations

import httpx

from stages.common.background_post import BackgroundPoster, OutcomeNames
from stages.common.counters import OutcomeCounters

_NAMES = OutcomeNames(
    delivered="consolidation_delivered",
    retried="consolidation_retried",
    failed="consolidation_failed",
    dropped="consolidation_dropped",
)


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
        self._poster = BackgroundPoster(
            client,
            "/api/logs/batch",
            counters,
            _NAMES,
            name="consolidation-forward",
            max_bytes=queue_bytes,
            attempts=attempts,
            backoff_seconds=backoff_seconds,
            headers={"content-type": "application/json"},
        )

    def offer(self, lines: list[bytes]) -> bool:
        """Queue a batch (one JSON line per record) without waiting; False, and counted as
        dropped, when the queue is full or the forwarder is closing.

        An empty queue takes any batch, so one larger than the budget still goes through."""
        return self._poster.offer(b'{"records":[' + b",".join(lines) + b"]}", len(lines))

    def queued_batches(self) -> int:
        return self._poster.queued_batches()

    def queued_bytes(self) -> int:
        return self._poster.queued_bytes()

    def reachable(self) -> bool | None:
        return self._poster.reachable()

    def close(self, timeout: float = 5.0) -> None:
        self._poster.close(timeout)

"""Puts records on the stream of their kind and says, per record, whether Kinesis has it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from stages.ingestion.producer import KinesisProducer, ProducerError, PutBatch

log = logging.getLogger(__name__)


class KinesisSink:
    """One producer per stream, keyed by record kind; partition key = the record's service."""

    def __init__(self, producers: Mapping[str, KinesisProducer], timeout: float) -> None:
        self._producers = dict(producers)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._last_ok: bool | None = None
        self._last_error = ""

    def send(self, records: list[dict[str, Any]]) -> list[bool]:
        """Put ``records``; ``result[i]`` is True when Kinesis acknowledged record ``i``.

        Waits at most the configured timeout; records still pending then count as not
        acknowledged (the caller spools them; the producer may yet write them: at-least-once).
        """
        acked = [False] * len(records)
        error = "not acknowledged within INGEST_KINESIS_TIMEOUT_SECONDS"
        submitted: list[tuple[list[int], PutBatch]] = []
        for kind, indexes in _indexes_by_kind(records).items():
            producer = self._producers.get(kind)
            if producer is None:
                error = f"no stream for kind {kind!r}"
                continue
            try:
                batch = producer.submit_many([records[i] for i in indexes], timeout=self._timeout)
            except ProducerError as exc:
                error = f"{producer.stream_name}: {exc}"
                continue
            submitted.append((indexes, batch))
        deadline = time.monotonic() + self._timeout
        for indexes, batch in submitted:
            batch.wait(max(0.0, deadline - time.monotonic()))
            for position, index in enumerate(indexes):
                acked[index] = batch.results[position] is not None
            if batch.errors:
                error = str(next(iter(batch.errors.values())))
        self._note(all(acked), "" if all(acked) else error)
        return acked

    def reachable(self) -> tuple[bool | None, str]:
        """The outcome of the last send (None before the first)."""
        with self._lock:
            return self._last_ok, self._last_error

    def close(self, timeout: float = 10.0) -> None:
        for producer in self._producers.values():
            producer.close(timeout)

    def _note(self, ok: bool, error: str) -> None:
        with self._lock:
            self._last_ok = ok
            self._last_error = error
        if not ok:
            log.warning("Kinesis did not take every record: %s", error)


def _indexes_by_kind(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record["kind"], []).append(index)
    return groups

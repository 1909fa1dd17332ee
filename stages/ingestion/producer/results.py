"""How callers get their answers: a ``Future`` per record or a :class:`PutBatch` per batch,
resolved by the producer as Kinesis answers; and the producer's :class:`ProducerStats`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from stages.ingestion.producer.errors import BatchPutError, PutResult

log = logging.getLogger(__name__)

# A user record: (partition key, its UTF-8 bytes, data, data+key size, sink, index in sink).
# Plain tuples: this is created once per record on the caller's thread, so it must be cheap.
UserRecord = tuple[str, bytes, bytes, int, "Future[PutResult] | PutBatch", int]
# What ``submit_many`` takes: a record (mapping) or a ``(partition_key, data)`` pair.
Item = Mapping[str, Any] | tuple[str, bytes | str]


class PutBatch:
    """The results of a ``submit_many`` batch, filled in by the producer as Kinesis answers.

    A lighter stand-in for one ``Future`` per record (those cost ~3.5 us each to create and
    resolve, a large share of the per-record budget).
    """

    def __init__(self, size: int) -> None:
        self.results: list[PutResult | None] = [None] * size
        self.errors: dict[int, BaseException] = {}
        self._remaining = size
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[PutBatch], Any]] = []
        if size == 0:
            self._done.set()

    def __len__(self) -> int:
        return len(self.results)

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every record is acknowledged or failed; False on timeout."""
        return self._done.wait(timeout)

    def pending(self) -> list[int]:
        with self._lock:
            return [i for i, r in enumerate(self.results) if r is None and i not in self.errors]

    def result(self, timeout: float | None = None) -> list[PutResult]:
        """Every record's position, or :class:`BatchPutError` naming what failed or is pending."""
        self.wait(timeout)
        with self._lock:
            if self._remaining == 0 and not self.errors:
                return list(self.results)  # type: ignore[arg-type]
            results = list(self.results)
            errors = dict(self.errors)
        pending = [i for i, r in enumerate(results) if r is None and i not in errors]
        raise BatchPutError(results, errors, pending)

    def add_done_callback(self, fn: Callable[[PutBatch], Any]) -> None:
        """Call ``fn(batch)`` once every record is resolved (at once if already done)."""
        with self._lock:
            if self._remaining:
                self._callbacks.append(fn)
                return
        fn(self)

    def _resolve(
        self, indexes: list[int], result: PutResult | None, error: BaseException | None
    ) -> None:
        results = self.results
        errors = self.errors
        with self._lock:
            for index in indexes:
                if results[index] is not None or index in errors:
                    continue
                if error is None:
                    results[index] = result
                else:
                    errors[index] = error
                self._remaining -= 1
            if self._remaining:
                return
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("PutBatch done callback failed")


@dataclass(frozen=True)
class ProducerStats:
    stream: str
    records_put: int
    bytes_put: int
    records_acknowledged: int
    records_failed: int
    kinesis_records_put: int
    aggregated_records_put: int
    put_records_calls: int
    put_records_call_errors: int
    put_records_partial_failures: int
    retried_entries: int
    throttled_calls: int
    throttled_entries: int
    rejected_oversize: int
    backpressure_waits: int
    backpressure_rejections: int
    in_flight_bytes: int
    in_flight_records: int
    shard_map_refreshes: int
    open_shards: int

    @property
    def throttled(self) -> int:
        return self.throttled_calls + self.throttled_entries


def resolve(
    records: list[UserRecord], result: PutResult | None, error: BaseException | None
) -> None:
    """Hand ``result`` (or ``error``) to every record's future or batch.

    Records of one batch usually sit next to each other, so they are resolved in runs: one lock
    round-trip per run instead of per record.
    """
    batch: PutBatch | None = None
    run: list[int] = []
    for rec in records:
        sink = rec[4]
        if sink is batch:
            run.append(rec[5])
            continue
        if batch is not None:
            batch._resolve(run, result, error)
            batch = None
        if type(sink) is PutBatch:
            batch = sink
            run = [rec[5]]
        elif not sink.done():  # a future the caller cancelled is left alone; the record is sent
            try:
                if error is None:
                    sink.set_result(result)  # type: ignore[union-attr]
                else:
                    sink.set_exception(error)  # type: ignore[union-attr]
            except InvalidStateError:
                pass
    if batch is not None:
        batch._resolve(run, result, error)

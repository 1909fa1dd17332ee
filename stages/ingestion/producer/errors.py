"""What the producer raises on purpose, and where Kinesis stored a record."""

from __future__ import annotations

from typing import NamedTuple

from stages.common.resources import KINESIS_MAX_RECORD_BYTES


class PutResult(NamedTuple):
    """Where Kinesis stored a record (for aggregated records: the aggregate's position)."""

    shard_id: str
    sequence_number: str


class ProducerError(Exception):
    """Base class of everything the producer raises on purpose."""


class RecordTooLarge(ProducerError, ValueError):
    """A record above Kinesis' per-record limit (data plus partition key)."""

    def __init__(
        self, size: int, limit: int = KINESIS_MAX_RECORD_BYTES, index: int | None = None
    ) -> None:
        self.size = size
        self.limit = limit
        self.index = index
        where = f"record #{index}" if index is not None else "record"
        super().__init__(
            f"{where} is {size} bytes (data + partition key); the Kinesis limit is {limit} bytes"
        )


class ProducerFull(ProducerError):
    """No room under the in-flight byte limit within the timeout; the caller should retry later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProducerClosed(ProducerError):
    """The producer is closing or closed, or closed before the record was acknowledged."""


class PutFailed(ProducerError):
    """Kinesis did not acknowledge the record: retries exhausted or a non-retryable error."""

    def __init__(self, message: str, error_code: str, attempts: int) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.attempts = attempts


class BatchPutError(ProducerError):
    """Some records of a ``put_many`` batch failed or were not acknowledged within the timeout.

    ``results[i]`` is the acknowledged position of record ``i`` or None; ``errors`` maps the
    indexes that failed for good to their exception; ``pending`` lists the indexes still in
    flight when the timeout expired (they may still be written).
    """

    def __init__(
        self,
        results: list[PutResult | None],
        errors: dict[int, BaseException],
        pending: list[int],
    ) -> None:
        self.results = results
        self.errors = errors
        self.pending = pending
        first = next(iter(errors.values()), None)
        super().__init__(
            f"{len(errors)} of {len(results)} records failed, {len(pending)} still pending"
            + (f" (first error: {first})" if first is not None else "")
        )

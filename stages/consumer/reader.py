"""Reading one shard: iterators, GetRecords, expiry, throttling and KPL deaggregation."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stages.common.kpl import UserRecord, deaggregate
from stages.common.retry import backoff_delay
from stages.consumer import metrics
from stages.consumer.leases import TRIM_HORIZON

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    sequence: str
    arrival: datetime
    user_records: list[UserRecord]
    size: int


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: list[KinesisRecord]
    millis_behind: int
    shard_closed: bool  # NextShardIterator was null: every record of the shard has been read
    limit_reached: bool = False  # the call returned as many records as it asked for


# Kinesis serves a shard at 2 MB/s; asking for more per call only raises the consumer's peak
# memory (a response is held three times over while botocore decodes it).
TARGET_BYTES_PER_READ = 2 * 1024 * 1024


class ShardReader:
    def __init__(
        self,
        kinesis: Any,
        stream: str,
        shard_id: str,
        checkpoint: str,
        limit: int,
        max_backoff: float,
        should_stop: Callable[[], bool],
    ) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.shard_id = shard_id
        self.limit = limit
        self.max_backoff = max_backoff
        self.should_stop = should_stop
        # The position the next iterator starts after: the checkpoint, then the last record read.
        self.position = checkpoint
        self._iterator: str | None = None
        self._closed = False
        # Sizes the next call's Limit; starts at Kinesis' largest record so the first call is small.
        self._avg_record_bytes = 1024.0 * 1024

    def _next_limit(self) -> int:
        return max(1, min(self.limit, int(TARGET_BYTES_PER_READ / self._avg_record_bytes)))

    def _new_iterator(self) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": self.shard_id}
        if self.position == TRIM_HORIZON:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = self.position
        return self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"]

    def read(self) -> ReadResult:
        """One GetRecords call, retried through expiry, throttling and transient errors."""
        if self._closed:
            return ReadResult([], 0, True)
        attempt = 0
        while True:
            try:
                if self._iterator is None:
                    self._iterator = self._new_iterator()
                limit = self._next_limit()
                resp = self.kinesis.get_records(ShardIterator=self._iterator, Limit=limit)
                break
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ExpiredIteratorException":
                    metrics.EXPIRED_ITERATORS.labels(self.stream).inc()
                    log.info("%s/%s: iterator expired, renewing", self.stream, self.shard_id)
                    self._iterator = None
                    continue
                if code in {"ProvisionedThroughputExceededException", "LimitExceededException"}:
                    metrics.THROTTLES.labels(self.stream).inc()
                    cause = "throttled"
                else:
                    cause = code or "client_error"
                    log.warning("%s/%s: GetRecords failed: %s", self.stream, self.shard_id, exc)
            except BotoCoreError as exc:
                cause = type(exc).__name__
                log.warning("%s/%s: GetRecords failed: %s", self.stream, self.shard_id, exc)
            metrics.RETRIES.labels("GetRecords", cause).inc()
            if self.should_stop():
                return ReadResult([], 0, False)
            time.sleep(backoff_delay(attempt, base=0.1, cap=self.max_backoff))
            attempt += 1

        records = []
        for raw in resp.get("Records", []):
            arrival = raw.get("ApproximateArrivalTimestamp") or datetime.now(UTC)
            data = raw["Data"]
            records.append(
                KinesisRecord(
                    raw["SequenceNumber"],
                    arrival,
                    deaggregate(data, raw.get("PartitionKey", "")),
                    len(data),
                )
            )
        if records:
            self.position = records[-1].sequence
            self._avg_record_bytes = max(sum(r.size for r in records) / len(records), 1.0)
        self._iterator = resp.get("NextShardIterator")
        if self._iterator is None:
            self._closed = True
        return ReadResult(
            records,
            int(resp.get("MillisBehindLatest", 0)),
            self._closed,
            limit_reached=len(records) >= limit,
        )

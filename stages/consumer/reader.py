"""Reading one shard: iterators, GetRecords, expiry, throttling and KPL deaggregation."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aws_kinesis_agg

# Importing the deaggregator first is required: it puts the library's generated protobuf modules
# on sys.path, which messages_pb2 needs to import.
from aws_kinesis_agg import deaggregator as _kpl
from botocore.exceptions import BotoCoreError, ClientError
from google.protobuf.message import DecodeError

from stages.consumer import metrics
from stages.consumer.leases import TRIM_HORIZON

log = logging.getLogger(__name__)

_MAGIC = aws_kinesis_agg.MAGIC
_DIGEST_SIZE = aws_kinesis_agg.DIGEST_SIZE


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One record as the producer put it: a plain Kinesis record, or one of a KPL aggregate."""

    data: bytes
    partition_key: str
    sub_sequence: int
    # Set when the Kinesis record carries the KPL magic but is not a readable aggregate: the
    # record goes to the dead letter with this reason instead of being parsed.
    error: str | None = None


def deaggregate(data: bytes, partition_key: str) -> list[UserRecord]:
    """Split a KPL aggregate into its user records; anything else is one plain record.

    Follows the KPL format rules (magic, protobuf, trailing MD5). Data that starts with the
    magic but is not a valid aggregate (bad checksum, truncated or corrupt protobuf, no records)
    is one record with ``error`` set: the magic bytes are not UTF-8, so it could never be a JSON
    record, and the reason says what is wrong with it. aws-kinesis-agg's own deaggregator prints
    and drops what it cannot split, so the format is read here instead. Never raises.
    """
    if not data.startswith(_MAGIC):
        return [UserRecord(data, partition_key, 0)]
    try:
        return _split_aggregate(data, partition_key)
    except DecodeError as exc:
        error = f"corrupt KPL aggregate: protobuf does not parse ({exc})"
    except Exception as exc:
        error = f"corrupt KPL aggregate: {type(exc).__name__}: {exc}"
    return [UserRecord(data, partition_key, 0, error)]


def _split_aggregate(data: bytes, partition_key: str) -> list[UserRecord]:
    if len(data) <= len(_MAGIC) + _DIGEST_SIZE:
        return [UserRecord(data, partition_key, 0, "corrupt KPL aggregate: too short")]
    body = data[len(_MAGIC) : -_DIGEST_SIZE]
    if hashlib.md5(body).digest() != data[-_DIGEST_SIZE:]:
        return [UserRecord(data, partition_key, 0, "corrupt KPL aggregate: MD5 checksum mismatch")]
    agg = _kpl.messages_pb2.AggregatedRecord()
    agg.ParseFromString(body)
    if not agg.records:
        return [UserRecord(data, partition_key, 0, "corrupt KPL aggregate: no user records")]
    keys = agg.partition_key_table
    return [
        UserRecord(
            r.data,
            keys[r.partition_key_index] if r.partition_key_index < len(keys) else partition_key,
            i,
        )
        for i, r in enumerate(agg.records)
    ]


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


def backoff_delay(attempt: int, cap: float, base: float = 0.1) -> float:
    """Capped exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**attempt))


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
            time.sleep(backoff_delay(attempt, self.max_backoff))
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

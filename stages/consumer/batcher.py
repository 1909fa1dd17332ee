"""Per-shard buffering: the records read since the shard's checkpoint, grouped by partition.

A flush always covers the whole buffered range of one shard, (checkpoint, last sequence], so the
checkpoint can move to the end of the range after the upload. Flushing whole ranges is also what
makes the object names reproducible after a crash: the same range gives the same partitions and
the same first/last sequence numbers, hence the same keys (see writer.object_key).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from stages.consumer.partitioner import Partition, Routed


@dataclass(slots=True)
class PartitionBuffer:
    lines: list[bytes] = field(default_factory=list)
    bytes: int = 0
    first_sequence: str = ""
    last_sequence: str = ""


@dataclass(frozen=True, slots=True)
class FlushLimits:
    max_records: int
    max_bytes: int
    max_age_seconds: float


class ShardBuffer:
    def __init__(self, stream: str, shard_id: str) -> None:
        self.stream = stream
        self.shard_id = shard_id
        self.partitions: dict[Partition, PartitionBuffer] = {}
        self.records = 0
        self.bytes = 0
        self.dead_letters = 0
        self.duplicates = 0  # records dropped because the window had their event_id already
        self.arrival_fallbacks = 0
        self.last_sequence: str | None = None  # last whole Kinesis record added
        self.first_added_at: float | None = None  # monotonic, for the age trigger

    def __len__(self) -> int:
        return self.records

    @property
    def empty(self) -> bool:
        return self.last_sequence is None

    def add(
        self,
        routed: Routed,
        sequence: str,
        sub_sequence: int,
        data: bytes,
        arrival: datetime,
        partition_key: str,
    ) -> None:
        line = routed.line
        if routed.reason is not None:
            line = dead_letter_line(
                routed.reason,
                self.stream,
                self.shard_id,
                sequence,
                sub_sequence,
                data,
                arrival,
                partition_key,
            )
            self.dead_letters += 1
        elif routed.event_time_from_arrival:
            self.arrival_fallbacks += 1
        buf = self.partitions.get(routed.partition)
        if buf is None:
            buf = self.partitions[routed.partition] = PartitionBuffer(first_sequence=sequence)
        buf.lines.append(line)
        buf.bytes += len(line) + 1
        buf.last_sequence = sequence
        self.records += 1
        self.bytes += len(line) + 1
        if self.first_added_at is None:
            self.first_added_at = time.monotonic()

    def mark_record_done(self, sequence: str) -> None:
        """Every user record of Kinesis record ``sequence`` is in the buffer."""
        self.last_sequence = sequence
        if self.first_added_at is None:
            # A Kinesis record with no user records still moves the checkpoint; give it an age.
            self.first_added_at = time.monotonic()

    def age(self, now: float | None = None) -> float:
        if self.first_added_at is None:
            return 0.0
        return (now if now is not None else time.monotonic()) - self.first_added_at

    def flush_reason(self, limits: FlushLimits, now: float | None = None) -> str | None:
        if self.empty:
            return None
        if self.records >= limits.max_records:
            return "count"
        if self.bytes >= limits.max_bytes:
            return "size"
        if self.age(now) >= limits.max_age_seconds:
            return "age"
        return None


def dead_letter_line(
    reason: str,
    stream: str,
    shard_id: str,
    sequence: str,
    sub_sequence: int,
    data: bytes,
    arrival: datetime,
    partition_key: str,
) -> bytes:
    return orjson.dumps(
        {
            "reason": reason,
            "stream": stream,
            "shard_id": shard_id,
            "sequence_number": sequence,
            "sub_sequence_number": sub_sequence,
            "partition_key": partition_key,
            "approximate_arrival_timestamp": arrival.isoformat(),
            "data_base64": base64.b64encode(data).decode(),
        }
    )

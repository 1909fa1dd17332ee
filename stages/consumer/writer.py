"""Object names and the upload.

The key of an object is derived only from what the shard range contains: stream, shard, the
first and last Kinesis sequence numbers of the partition's records in the range, and the
partition (the format is ``stages.common.lake.object_key``). Re-flushing the same range after a
crash therefore overwrites the same keys instead of adding new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.common import lake
from stages.consumer.batcher import PartitionBuffer
from stages.consumer.encoder import encode_lines
from stages.consumer.partitioner import Partition


@dataclass(frozen=True, slots=True)
class LakeObject:
    key: str
    body: bytes
    records: int
    dead_letter: bool


def object_key(
    stream: str, shard_id: str, partition: Partition, buf: PartitionBuffer, compression: str
) -> str:
    return lake.object_key(
        partition.prefix, stream, shard_id, buf.first_sequence, buf.last_sequence, compression
    )


def build_objects(
    stream: str,
    shard_id: str,
    partitions: dict[Partition, PartitionBuffer],
    compression: str,
) -> list[LakeObject]:
    return [
        LakeObject(
            key=object_key(stream, shard_id, partition, buf, compression),
            body=encode_lines(buf.lines, compression),
            records=len(buf.lines),
            dead_letter=partition.dead_letter,
        )
        for partition, buf in partitions.items()
    ]

"""Reading a stream back the way a consumer would: every shard, deaggregated."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from aws_kinesis_agg.deaggregator import iter_deaggregate_records


@dataclass(frozen=True)
class UserRecord:
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    aggregated: bool


@dataclass(frozen=True)
class StreamContents:
    kinesis_records: int
    records: list[UserRecord]
    shards: dict[str, tuple[int, int]]  # open shard id -> (starting, ending hash key)

    def shard_for_key(self, partition_key: str) -> str:
        """The open shard Kinesis routes ``partition_key`` to without aggregation."""
        value = int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")
        for shard_id, (start, end) in self.shards.items():
            if start <= value <= end:
                return shard_id
        raise AssertionError(f"no shard for {partition_key!r}")


def read_stream(kinesis: Any, stream: str) -> StreamContents:
    """Everything in ``stream`` from TRIM_HORIZON on every shard, deaggregated."""
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    records: list[UserRecord] = []
    kinesis_records = 0
    for shard in shards:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                break
            kinesis_records += len(page["Records"])
            for rec in iter_deaggregate_records(page["Records"], data_format="Boto3"):
                meta = rec["kinesis"]
                aggregated = bool(meta.get("aggregated"))
                # The library re-encodes deaggregated data as base64 but passes plain records'
                # bytes through untouched.
                data = base64.b64decode(meta["data"]) if aggregated else meta["data"]
                records.append(
                    UserRecord(
                        shard["ShardId"],
                        meta["sequenceNumber"],
                        meta["partitionKey"],
                        data,
                        aggregated,
                    )
                )
            iterator = page.get("NextShardIterator")
    open_shards = {
        s["ShardId"]: (
            int(s["HashKeyRange"]["StartingHashKey"]),
            int(s["HashKeyRange"]["EndingHashKey"]),
        )
        for s in shards
        if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
    }
    return StreamContents(kinesis_records, records, open_shards)

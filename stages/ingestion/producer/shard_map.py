"""Which shard a record goes to: the stream's open shards and their hash key ranges, with one
send queue (a :class:`Lane`) per shard.

Kinesis puts a record on the shard whose hash key range holds the MD5 of its partition key (as
a 128-bit big-endian integer); the producer computes the same, so it can pack the records of one
shard into one aggregate. While no shard map is known there is one lane for the whole stream.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stages.ingestion.producer.batching import Entry
    from stages.ingestion.producer.results import UserRecord

HASH_KEY_SPACE = 1 << 128
# The memo tables are cleared past this many partition keys, so unbounded keys cannot grow them.
_MAX_MEMO_KEYS = 100_000

# (shard id, starting hash key, ending hash key)
ShardRange = tuple[str, int, int]


def partition_key_hash(partition_key: str) -> int:
    """Kinesis' hash of a partition key: MD5 as an unsigned 128-bit big-endian integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


class Lane:
    """The send queue of one open shard (or, while no shard map is known, of the whole stream)."""

    __slots__ = ("busy", "end", "not_before", "records", "records_bytes", "retired", "retries",
                 "shard_id", "start")  # fmt: skip

    def __init__(self, shard_id: str | None, start: int, end: int) -> None:
        self.shard_id = shard_id
        self.start = start
        self.end = end
        # Only the sender thread touches ``records``; the rest is guarded by the producer's lock.
        self.records: deque[UserRecord] = deque()
        self.records_bytes = 0
        self.retries: list[Entry] = []
        self.busy = False
        self.not_before = 0.0
        self.retired = False


class ShardMap:
    """The lanes of a stream and the routing of partition keys to them.

    Not thread-safe by itself: the producer calls ``install`` and ``lane_for_hash`` under its
    lock, and ``route``/``hash`` from the sender thread only.
    """

    def __init__(self) -> None:
        # Every lane, retired ones included until they are emptied.
        self.lanes: dict[str | None, Lane] = {}
        self._starts: list[int] = []
        self.routed: list[Lane] = []  # the open lanes, by starting hash key
        self._pk_lane: dict[str, Lane] = {}
        self._pk_hash: dict[str, int] = {}
        self.install(None)

    def install(self, shards: list[ShardRange] | None) -> list[Lane]:
        """Route to ``shards`` from now on (None: one lane for the stream); returns the lanes
        of shards no longer open, marked retired (their records are routed again later)."""
        old = self.lanes
        if shards:
            new = {sid: old.get(sid) or Lane(sid, start, end) for sid, start, end in shards}
        else:
            new = {None: old.get(None) or Lane(None, 0, HASH_KEY_SPACE - 1)}
        retired = [lane for key, lane in old.items() if key not in new]
        for lane in retired:
            lane.retired = True
        self.lanes = {**new, **{lane.shard_id: lane for lane in retired}}
        ordered = sorted(new.values(), key=lambda lane: lane.start)
        # The first lane takes everything below its start too, so routing never misses.
        self._starts = [0] + [lane.start for lane in ordered[1:]]
        self.routed = ordered
        self._pk_lane = {}
        return retired

    def shards(self) -> list[ShardRange]:
        """The open shards routed to, by starting hash key ([] while no map is known)."""
        return [(lane.shard_id, lane.start, lane.end) for lane in self.routed if lane.shard_id]

    def open_shard_count(self) -> int:
        return sum(1 for k, lane in self.lanes.items() if k is not None and not lane.retired)

    def hash(self, partition_key: str) -> int:
        value = self._pk_hash.get(partition_key)
        if value is None:
            if len(self._pk_hash) > _MAX_MEMO_KEYS:
                self._pk_hash.clear()
            value = self._pk_hash[partition_key] = partition_key_hash(partition_key)
        return value

    def lane_for(self, partition_key: str) -> Lane:
        lane = self._pk_lane.get(partition_key)
        if lane is None:
            lane = self.lane_for_hash(self.hash(partition_key))
            self._pk_lane[partition_key] = lane
        return lane

    def lane_for_hash(self, hash_key: int) -> Lane:
        return self.routed[bisect.bisect_right(self._starts, hash_key) - 1]

    def route(self, records: list[UserRecord]) -> None:
        """Append each record to its shard's lane."""
        if len(self.routed) == 1:
            lane = self.routed[0]
            lane.records.extend(records)
            lane.records_bytes += sum(rec[3] for rec in records)
            return
        if len(self._pk_lane) > _MAX_MEMO_KEYS:
            self._pk_lane.clear()
        lane_for = self.lane_for
        for rec in records:
            lane = lane_for(rec[0])
            lane.records.append(rec)
            lane.records_bytes += rec[3]


def list_open_shards(client: Any, stream_name: str) -> list[ShardRange]:
    """The stream's open shards (ListShards, every page); closed parents are left out."""
    shards: list[ShardRange] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        page = client.list_shards(**kwargs)
        for shard in page.get("Shards", []):
            if "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
                continue  # closed by a split or merge; its children take the writes
            hash_range = shard["HashKeyRange"]
            shards.append(
                (
                    shard["ShardId"],
                    int(hash_range["StartingHashKey"]),
                    int(hash_range["EndingHashKey"]),
                )
            )
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}

"""Corrections to moto's Kinesis model so the embedded emulator behaves like Kinesis where our
guarantees depend on it. Applied once, in the emulator process only.

- ``Shard.put_record`` is documented by moto as not safe for concurrency: two threads of the
  threaded server can draw the same sequence number and one record silently replaces the other.
  We serialise writes per stream.
- Finding the last sequence number built a list of every key (O(n) per put), and GetRecords
  scanned the shard from its first record on every call; both made the emulator quadratic in the
  number of records. Sequence numbers in moto are consecutive integers, so both become lookups.
- GetRecords returned everything up to ``Limit`` however large; Kinesis stops at 10 MiB per call,
  and consumers size their memory by that.
- After ``SplitShard`` moto re-puts the parent's records and keeps routing new records by hash
  range over *all* shards, so they land in the closed parent again. Real Kinesis keeps the
  parent's records in the parent and routes new records to the open children only.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.kinesis import models

_write_lock = threading.RLock()
_MAX_GET_BYTES = 10 * 1024 * 1024
_applied = False


def _max_sequence_number(self: models.Shard) -> int:
    if self.records:
        return next(reversed(self.records))
    return 0


def _min_sequence_number(self: models.Shard) -> int:
    if self.records:
        return next(iter(self.records))
    return 0


def _put_record(self: models.Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    with _write_lock:
        sequence_number = _max_sequence_number(self) + 1
        self.records[sequence_number] = models.Record(
            partition_key, data, sequence_number, explicit_hash_key
        )
    return str(sequence_number)


def _get_records(
    self: models.Shard, last_sequence_id: str, limit: int | None
) -> tuple[list[models.Record], int, int]:
    position = int(last_sequence_id)
    newest = _max_sequence_number(self)
    results: list[models.Record] = []
    size = 0
    seq = max(position + 1, _min_sequence_number(self))
    while seq <= newest and (limit is None or len(results) < limit) and size < _MAX_GET_BYTES:
        record = self.records.get(seq)
        if record is not None:
            results.append(record)
            # moto keeps the data base64-encoded: 3 bytes for every 4 characters.
            size += len(record.data) * 3 // 4 + len(record.partition_key)
            position = seq
        seq += 1
    millis_behind = 0
    if results and newest:
        millis_behind = int((self.records[newest].created_at - results[-1].created_at) * 1000)
    return results, position, millis_behind


def _get_shard_for_key(
    self: models.Stream, partition_key: str, explicit_hash_key: str | None
) -> models.Shard | None:
    if explicit_hash_key:
        int_key = int(explicit_hash_key)
        if int_key >= 2**128:
            raise models.InvalidArgumentError("explicit_hash_key")
    else:
        int_key = int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        # Hash ranges are inclusive at both ends, as ListShards reports them.
        if shard.is_open and shard.starting_hash <= int_key <= shard.ending_hash:
            return shard
    return None


_original_split = models.Stream.split_shard


def _split_shard(self: models.Stream, shard_to_split: str, new_starting_hash_key: str) -> None:
    with _write_lock:
        parent = self.shards.get(shard_to_split)
        kept: Any = parent.records if parent is not None else None
        if parent is not None:
            parent.records = {}
        try:
            _original_split(self, shard_to_split, new_starting_hash_key)
        finally:
            if parent is not None:
                parent.records = kept


def apply() -> None:
    global _applied
    if _applied:
        return
    models.Shard.put_record = _put_record
    models.Shard.get_max_sequence_number = _max_sequence_number
    models.Shard.get_min_sequence_number = _min_sequence_number
    models.Shard.get_records = _get_records
    models.Stream.get_shard_for_key = _get_shard_for_key
    models.Stream.split_shard = _split_shard
    _applied = True

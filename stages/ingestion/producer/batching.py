"""Packing a lane's user records into the entries of one PutRecords call.

Records of the same shard are packed into KPL aggregated records (:mod:`stages.common.kpl`) put
with an ``ExplicitHashKey`` inside that shard's range; an aggregate of a single record is sent
as the plain record (as the KPL does), and so is everything while no shard map is known. A call
stays within Kinesis' 500 entries and 5 MiB (data plus partition keys).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stages.common.kpl import OVERHEAD, VARINT_TABLE_SIZE, VARINTS, encode_varint, seal
from stages.common.resources import KINESIS_MAX_RECORD_BYTES
from stages.ingestion.producer.results import UserRecord
from stages.ingestion.producer.shard_map import Lane

MAX_RECORD_BYTES = KINESIS_MAX_RECORD_BYTES
MAX_CALL_RECORDS = 500
MAX_CALL_BYTES = 5 * 1024 * 1024  # data + partition keys of one PutRecords call
MAX_PARTITION_KEY_CHARS = 256
DEFAULT_AGGREGATION_MAX_BYTES = 256 * 1024


class Entry:
    """One Kinesis record of a PutRecords call (aggregated or plain) and its user records."""

    __slots__ = ("aggregated", "attempts", "hash_key", "last_error", "records", "request", "size")

    def __init__(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | None,
        hash_key: int,
        size: int,
        records: list[UserRecord],
    ) -> None:
        self.request: dict[str, Any] = {"Data": data, "PartitionKey": partition_key}
        if explicit_hash_key is not None:
            self.request["ExplicitHashKey"] = str(explicit_hash_key)
        self.aggregated = explicit_hash_key is not None
        self.hash_key = hash_key
        self.size = size
        self.records = records
        self.attempts = 0
        self.last_error = ""


def build_call(
    lane: Lane,
    retries: list[Entry],
    *,
    aggregate: bool,
    aggregation_max_bytes: int,
    hash_of: Callable[[str], int],
) -> tuple[list[Entry], list[Entry]]:
    """The entries of the lane's next call, retries first, and the retries that did not fit.

    New entries are taken from the front of ``lane.records`` (sender thread only); with
    ``aggregate`` (and a known shard) they are KPL aggregates of up to
    ``aggregation_max_bytes``.
    """
    entries: list[Entry] = []
    leftover: list[Entry] = []
    total = 0
    for entry in retries:
        if len(entries) < MAX_CALL_RECORDS and total + entry.size <= MAX_CALL_BYTES:
            entries.append(entry)
            total += entry.size
        else:
            leftover.append(entry)
    aggregate = aggregate and lane.shard_id is not None
    while lane.records and len(entries) < MAX_CALL_RECORDS:
        entry = take_entry(lane, MAX_CALL_BYTES - total, aggregate, aggregation_max_bytes, hash_of)
        if entry is None:
            break
        entries.append(entry)
        total += entry.size
    return entries, leftover


def take_entry(
    lane: Lane,
    room: int,
    aggregate: bool,
    aggregation_max_bytes: int,
    hash_of: Callable[[str], int],
) -> Entry | None:
    """Pop the next Kinesis record's worth of user records from ``lane``; None if the first
    does not fit in ``room``."""
    records = lane.records
    first = records[0]
    if first[3] > room:
        return None
    if aggregate:
        entry = take_aggregate(lane, min(aggregation_max_bytes, room), hash_of)
        if entry is not None:
            return entry
    records.popleft()
    lane.records_bytes -= first[3]
    # One record alone goes as itself: no aggregation overhead, and consumers that do not
    # deaggregate can read it too.
    return Entry(first[2], first[0], None, hash_of(first[0]), first[3], [first])


def take_aggregate(lane: Lane, limit: int, hash_of: Callable[[str], int]) -> Entry | None:
    """Pack the lane's leading records into one aggregated record of at most ``limit`` bytes
    (data plus the outer partition key); None if fewer than two records fit.

    The hottest loop of the producer, so the protobuf encoding of ``kpl.encode_aggregated`` is
    inlined here: same bytes, no per-record function calls.
    """
    records = lane.records
    first = records[0]
    varints = VARINTS
    table_size = VARINT_TABLE_SIZE
    size = OVERHEAD + len(first[1])
    keys: dict[str, int] = {}
    key_parts: list[bytes] = []
    record_parts: list[bytes] = []
    taken: list[UserRecord] = []
    taken_bytes = 0
    for rec in records:
        key = rec[0]
        data = rec[2]
        index = keys.get(key)
        key_part = b""
        if index is None:
            index = len(keys)
            key_bytes = rec[1]
            key_len = len(key_bytes)
            key_varint = varints[key_len] if key_len < table_size else encode_varint(key_len)
            key_part = b"\x0a" + key_varint + key_bytes
        data_len = len(data)
        index_varint = varints[index] if index < table_size else encode_varint(index)
        len_varint = varints[data_len] if data_len < table_size else encode_varint(data_len)
        inner = 2 + len(index_varint) + len(len_varint) + data_len
        inner_varint = varints[inner] if inner < table_size else encode_varint(inner)
        cost = len(key_part) + 1 + len(inner_varint) + inner
        if size + cost > limit:
            break
        size += cost
        if key_part:
            keys[key] = index
            key_parts.append(key_part)
        record_parts += (
            b"\x1a",
            inner_varint,
            b"\x08",
            index_varint,
            b"\x1a",
            len_varint,
            data,
        )
        taken.append(rec)
        taken_bytes += rec[3]
    if len(taken) < 2:
        return None
    for _ in range(len(taken)):
        records.popleft()
    lane.records_bytes -= taken_bytes
    body = b"".join(key_parts + record_parts)
    data = seal(body)
    hash_key = hash_of(first[0])
    return Entry(data, first[0], hash_key, hash_key, len(data) + len(first[1]), taken)

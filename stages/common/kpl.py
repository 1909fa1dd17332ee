"""The KPL aggregated record format, both ways: encoding for producers, decoding for consumers.

An aggregate is ``MAGIC`` + an ``AggregatedRecord`` protobuf + the MD5 digest of the protobuf,
exactly what ``aws-kinesis-agg`` writes and reads. Encoding is written out by hand instead of
going through ``RecordAggregator``: the library builds a protobuf message per user record and
deep-copies full aggregates, several times the producer's whole per-record budget. The bytes are
identical (tests/common/test_kpl.py holds them to the library's own serialisation).

The varint table and ``OVERHEAD`` are public so that a producer's hot loop can inline the
encoding of :func:`encode_aggregated` without a function call per record.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import aws_kinesis_agg

# Importing the deaggregator first is required: it puts the library's generated protobuf modules
# on sys.path, which messages_pb2 needs to import.
from aws_kinesis_agg import deaggregator as _kpl
from google.protobuf.message import DecodeError

MAGIC: bytes = aws_kinesis_agg.MAGIC
DIGEST_SIZE: int = aws_kinesis_agg.DIGEST_SIZE
# Bytes of an aggregate around its protobuf body.
OVERHEAD = len(MAGIC) + DIGEST_SIZE

# Field tags of the AggregatedRecord protobuf (wire type 2, length-delimited, unless noted).
TAG_PARTITION_KEY = b"\x0a"  # partition_key_table: field 1
TAG_RECORD = b"\x1a"  # records: field 3
TAG_KEY_INDEX = b"\x08"  # Record.partition_key_index: field 1, varint
TAG_DATA = b"\x1a"  # Record.data: field 3

VARINT_TABLE_SIZE = 1 << 14


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


VARINTS: list[bytes] = [encode_varint(i) for i in range(VARINT_TABLE_SIZE)]


def varint(value: int) -> bytes:
    return VARINTS[value] if value < VARINT_TABLE_SIZE else encode_varint(value)


def seal(body: bytes) -> bytes:
    """An aggregate from its protobuf body: magic in front, MD5 digest behind."""
    return MAGIC + body + hashlib.md5(body).digest()


def encode_aggregated(partition_keys: list[str], records: list[tuple[int, bytes]]) -> bytes:
    """One KPL aggregated record: ``records`` are (index into ``partition_keys``, data)."""
    parts: list[bytes] = []
    for key in partition_keys:
        key_bytes = key.encode("utf-8")
        parts += (TAG_PARTITION_KEY, varint(len(key_bytes)), key_bytes)
    for index, data in records:
        index_varint = varint(index)
        length_varint = varint(len(data))
        inner = 2 + len(index_varint) + len(length_varint) + len(data)
        parts += (TAG_RECORD, varint(inner), TAG_KEY_INDEX, index_varint, TAG_DATA)
        parts += (length_varint, data)
    return seal(b"".join(parts))


class UserRecord(NamedTuple):
    """One record as the producer put it: a plain Kinesis record, or one of a KPL aggregate.

    A named tuple: a consumer builds one per record, and a tuple is built in C."""

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
    if not data.startswith(MAGIC):
        return [UserRecord(data, partition_key, 0)]
    try:
        return _split_aggregate(data, partition_key)
    except DecodeError as exc:
        error = f"corrupt KPL aggregate: protobuf does not parse ({exc})"
    except Exception as exc:
        error = f"corrupt KPL aggregate: {type(exc).__name__}: {exc}"
    return [UserRecord(data, partition_key, 0, error)]


def _split_aggregate(data: bytes, partition_key: str) -> list[UserRecord]:
    if len(data) <= OVERHEAD:
        return [UserRecord(data, partition_key, 0, "corrupt KPL aggregate: too short")]
    body = data[len(MAGIC) : -DIGEST_SIZE]
    if hashlib.md5(body).digest() != data[-DIGEST_SIZE:]:
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

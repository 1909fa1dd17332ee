"""The KPL aggregate format: our encoder and decoder agree with each other and with
aws-kinesis-agg, and decoding never raises: corrupt aggregates are one record with a reason."""

from __future__ import annotations

import base64
import hashlib

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.common.kpl import (
    MAGIC,
    OVERHEAD,
    UserRecord,
    deaggregate,
    encode_aggregated,
    encode_varint,
    seal,
    varint,
)

# Partition keys of one to five characters (several records share one) and small payloads.
USER_RECORDS = st.lists(
    st.tuples(st.text(min_size=1, max_size=5), st.binary(max_size=300)), min_size=1, max_size=40
)


def _encode(records: list[tuple[str, bytes]]) -> bytes:
    """``records`` as one aggregate: a key table in first-seen order, indices into it."""
    keys: dict[str, int] = {}
    indexed = [(keys.setdefault(key, len(keys)), data) for key, data in records]
    return encode_aggregated(list(keys), indexed)


def _library_bytes(records: list[tuple[str, bytes]]) -> bytes:
    agg = RecordAggregator()
    for key, data in records:
        assert agg.add_user_record(key, data) is None  # everything fits in one aggregate
    return agg.clear_and_get().get_contents()[2]


# --- Encoding ------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(USER_RECORDS)
def test_round_trip_gives_back_every_user_record_in_order(records: list[tuple[str, bytes]]) -> None:
    users = deaggregate(_encode(records), "outer")
    assert [(u.partition_key, u.data) for u in users] == records
    assert [u.sub_sequence for u in users] == list(range(len(records)))
    assert all(u.error is None for u in users)


@settings(max_examples=200, deadline=None)
@given(USER_RECORDS)
def test_encoding_is_byte_for_byte_the_librarys(records: list[tuple[str, bytes]]) -> None:
    assert _encode(records) == _library_bytes(records)


@settings(max_examples=100, deadline=None)
@given(USER_RECORDS)
def test_the_librarys_deaggregator_reads_our_aggregates(records: list[tuple[str, bytes]]) -> None:
    kinesis_record = {
        "Data": _encode(records),
        "PartitionKey": "outer",
        "SequenceNumber": "1",
        "ApproximateArrivalTimestamp": 0,
    }
    users = iter_deaggregate_records(kinesis_record, data_format="Boto3")
    # The library hands deaggregated data back base64-encoded.
    assert [
        (u["kinesis"]["partitionKey"], base64.b64decode(u["kinesis"]["data"])) for u in users
    ] == (records)


def test_large_records_and_many_keys_use_multi_byte_varints() -> None:
    # Lengths past the varint table (16 KiB) and over 128 keys: multi-byte varints everywhere.
    records = [(f"key-{i}", bytes([i % 256]) * (20_000 if i % 50 == 0 else i)) for i in range(200)]
    data = _encode(records)
    assert data == _library_bytes(records)
    assert [(u.partition_key, u.data) for u in deaggregate(data, "outer")] == records


def test_varints_match_protobuf() -> None:
    for value in [0, 1, 127, 128, 300, 16_383, 16_384, 2**21, 2**35 + 7, 2**63 - 1]:
        assert encode_varint(value) == _VarintBytes(value)
        assert varint(value) == _VarintBytes(value)


def test_seal_frames_the_body_with_magic_and_digest() -> None:
    sealed = seal(b"body")
    assert sealed == MAGIC + b"body" + hashlib.md5(b"body").digest()
    assert len(sealed) == OVERHEAD + 4


# --- Decoding ------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(USER_RECORDS)
def test_we_read_the_librarys_aggregates(records: list[tuple[str, bytes]]) -> None:
    users = deaggregate(_library_bytes(records), "outer")
    assert [(u.partition_key, u.data) for u in users] == records


@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=300), checksum_ok=st.booleans())
def test_any_data_behind_the_magic_is_split_or_one_record_with_a_reason(
    body: bytes, checksum_ok: bool
) -> None:
    digest = hashlib.md5(body).digest()
    data = MAGIC + body + (digest if checksum_ok else bytes(b ^ 0xFF for b in digest))
    users = deaggregate(data, "pk")
    assert users
    if len(users) == 1 and users[0].error is not None:
        assert users[0].data == data
        assert users[0].error.startswith("corrupt KPL aggregate: ")
        if not checksum_ok:
            assert "MD5 checksum mismatch" in users[0].error or "too short" in users[0].error
    else:
        assert checksum_ok
        assert all(u.error is None for u in users)
        assert [u.sub_sequence for u in users] == list(range(len(users)))


@given(st.binary(max_size=100).filter(lambda d: not d.startswith(MAGIC)))
def test_data_without_the_magic_is_one_plain_record(data: bytes) -> None:
    assert deaggregate(data, "pk") == [UserRecord(data, "pk", 0)]


def _only_error(data: bytes) -> str | None:
    users = deaggregate(data, "pk")
    assert len(users) == 1
    assert users[0].data == data  # the whole Kinesis record, kept for the dead letter
    assert users[0].partition_key == "pk"
    return users[0].error


def test_corrupt_aggregates_say_what_is_wrong() -> None:
    good = _encode([("k", b"one" * 30), ("k", b"two" * 30)])
    assert _only_error(MAGIC) == "corrupt KPL aggregate: too short"
    assert _only_error(MAGIC + b"\x00" * 16) == "corrupt KPL aggregate: too short"
    assert _only_error(good[:-1] + bytes([good[-1] ^ 1])) == (
        "corrupt KPL aggregate: MD5 checksum mismatch"
    )
    truncated = good[: len(MAGIC) + 100]  # cut inside the protobuf, digest gone with it
    assert _only_error(truncated) == "corrupt KPL aggregate: MD5 checksum mismatch"
    # A consistent digest over a body that is not an AggregatedRecord.
    error = _only_error(seal(b"\x1a\x7f\x08"))
    assert error is not None and error.startswith("corrupt KPL aggregate: protobuf does not parse")
    # A valid protobuf with a key table but no records.
    assert _only_error(seal(b"\x0a\x01k")) == "corrupt KPL aggregate: no user records"


def test_a_key_index_past_the_table_falls_back_to_the_outer_key() -> None:
    data = encode_aggregated(["k"], [(0, b"a"), (3, b"b")])
    assert [(u.partition_key, u.data) for u in deaggregate(data, "outer")] == [
        ("k", b"a"),
        ("outer", b"b"),
    ]

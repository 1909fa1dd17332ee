"""KPL deaggregation never raises: an aggregate is split, anything else is one record."""

from __future__ import annotations

import hashlib

import aws_kinesis_agg
from aws_kinesis_agg.aggregator import RecordAggregator
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.consumer.reader import deaggregate

MAGIC = aws_kinesis_agg.MAGIC


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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=5), st.binary(max_size=50)), min_size=1))
def test_a_valid_aggregate_gives_back_every_user_record_in_order(
    records: list[tuple[str, bytes]],
) -> None:
    agg = RecordAggregator()
    for key, data in records:
        agg.add_user_record(key, data)
    _pk, _ehk, data = agg.clear_and_get().get_contents()
    users = deaggregate(data, "outer")
    assert [(u.partition_key, u.data) for u in users] == records
    assert all(u.error is None for u in users)


@given(st.binary(max_size=100).filter(lambda d: not d.startswith(MAGIC)))
def test_data_without_the_magic_is_one_plain_record(data: bytes) -> None:
    assert [(u.data, u.partition_key, u.error) for u in deaggregate(data, "pk")] == [
        (data, "pk", None)
    ]

"""The emulator's Kinesis retention, on moto's shard model in this process (hours can't pass in
a test; the records' arrival times are moved back instead)."""

from __future__ import annotations

import time
from base64 import b64encode

import pytest
from moto.kinesis import models

from stages.emulator import moto_patches


@pytest.fixture
def shard(monkeypatch: pytest.MonkeyPatch) -> models.Shard:
    moto_patches.apply(s3_memory_object_bytes=64 * 1024)
    monkeypatch.setattr(moto_patches, "_SEGMENT_BYTES", 1000)  # a new file every ~3 records
    return models.Shard(0, 0, 2**128 - 1)


def put(shard: models.Shard, payload: bytes) -> str:
    return shard.put_record("key", b64encode(payload).decode(), None)


def age(shard: models.Shard, sequences: range, seconds: float) -> None:
    for sequence in sequences:
        shard.records[sequence].created_at -= seconds


def payloads(shard: models.Shard, after: str) -> list[bytes]:
    records, _, _ = shard.get_records(after, None)
    return [record.to_json()["Data"] for record in records]


def test_records_past_retention_expire_and_their_files_are_let_go(shard: models.Shard) -> None:
    sent = [f"record {i} ".encode() * 40 for i in range(12)]  # ~400 bytes each
    assert [put(shard, p) for p in sent] == [str(n) for n in range(1, 13)]
    files_before = moto_patches._log_of(shard).files()
    assert files_before >= 4

    age(shard, range(1, 8), 3600)
    assert moto_patches.expire_records(shard, retention_seconds=600, now=time.time()) == 7
    assert payloads(shard, "0") == sent[7:]  # TRIM_HORIZON now starts at the first live one
    assert payloads(shard, "9") == sent[9:]
    assert moto_patches._log_of(shard).files() < files_before

    # Nothing else is old enough: nothing more goes.
    assert moto_patches.expire_records(shard, retention_seconds=600, now=time.time()) == 0


def test_sequence_numbers_go_on_after_every_record_expired(shard: models.Shard) -> None:
    for i in range(5):
        put(shard, f"old {i}".encode())
    age(shard, range(1, 6), 3600)
    assert moto_patches.expire_records(shard, retention_seconds=600, now=time.time()) == 5
    assert payloads(shard, "0") == []
    # A consumer checkpointed at 5 must see what comes next, numbered after it.
    assert put(shard, b"new") == "6"
    assert payloads(shard, "5") == [b"new"]
    assert shard.get_max_sequence_number() == 6

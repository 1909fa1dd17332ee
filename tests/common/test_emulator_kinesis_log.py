"""Kinesis records kept on disk (stages/emulator/kinesis_log.py) read back as the consumer reads
them: every iterator type, pages by count and by the 10 MiB cap, keys and hash keys, arrival
times, retention, SplitShard and MergeShards, with records spread over many small segments."""

from __future__ import annotations

import time
from base64 import b64encode

import pytest
from moto.kinesis import models

from stages.emulator import files, kinesis_model, moto_patches

ACCOUNT = "123456789012"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> models.KinesisBackend:
    moto_patches.apply(s3_memory_object_bytes=64 * 1024)
    monkeypatch.setattr(files, "SEGMENT_BYTES", 1500)  # a new segment every few records
    kinesis = models.KinesisBackend("us-east-1", ACCOUNT)
    kinesis.create_stream("log", shard_count=1, stream_mode=None)
    return kinesis


def put(backend: models.KinesisBackend, payload: bytes, key: str = "k", hash_key: str = "") -> str:
    entry = {"PartitionKey": key, "Data": b64encode(payload).decode()}
    if hash_key:
        entry["ExplicitHashKey"] = hash_key
    return backend.put_records(None, "log", [entry])["Records"][0]["SequenceNumber"]


def read(
    backend: models.KinesisBackend,
    kind: str,
    sequence: str | None = None,
    at: float | None = None,
    limit: int | None = None,
    shard: str = "shardId-000000000000",
) -> list[models.Record]:
    iterator = backend.get_shard_iterator(None, "log", shard, kind, sequence, at)  # type: ignore[arg-type]
    out: list[models.Record] = []
    while True:
        iterator, records, _ = backend.get_records(None, iterator, limit)
        if not records:
            return out
        out.extend(records)


def datas(records: list[models.Record]) -> list[bytes]:
    return [r.to_json()["Data"] for r in records]


def test_every_iterator_type_across_segments(backend: models.KinesisBackend) -> None:
    sent = [f"record {n} ".encode() * 30 for n in range(40)]  # ~300 bytes: ~5 per segment
    sequences: list[str] = []
    times: list[float] = []
    for payload in sent:
        sequences.append(put(backend, payload, key=f"key-{len(sequences)}"))
        times.append(time.time())
        time.sleep(0.002)
    assert sequences == [str(n) for n in range(1, 41)]
    shard = backend.describe_stream(None, "log").shards["shardId-000000000000"]
    assert len({shard.records[n]._storage for n in range(1, 41)}) >= 6  # many segments

    assert datas(read(backend, "TRIM_HORIZON")) == sent
    assert datas(read(backend, "TRIM_HORIZON", limit=7)) == sent
    assert datas(read(backend, "AT_SEQUENCE_NUMBER", "17")) == sent[16:]
    assert datas(read(backend, "AFTER_SEQUENCE_NUMBER", "17")) == sent[17:]
    assert read(backend, "LATEST") == []
    # AT_TIMESTAMP: the first record that arrived at or after the time.
    assert datas(read(backend, "AT_TIMESTAMP", at=times[24])) == sent[25:]
    assert datas(read(backend, "AT_TIMESTAMP", at=0.0)) == sent
    assert read(backend, "AT_TIMESTAMP", at=time.time() + 60) == []

    record = read(backend, "AT_SEQUENCE_NUMBER", "9", limit=1)[0]
    assert record.partition_key == "key-8"
    assert record.to_json()["SequenceNumber"] == "9"
    assert abs(record.created_at - times[8]) < 1
    assert record.to_json()["ApproximateArrivalTimestamp"].year >= 2025


def test_pages_stop_at_ten_mebibytes(backend: models.KinesisBackend) -> None:
    big = b"x" * (900 * 1024)
    for _ in range(15):
        put(backend, big)
    iterator = backend.get_shard_iterator(
        None, "log", "shardId-000000000000", "TRIM_HORIZON", None, None
    )  # type: ignore[arg-type]
    iterator, first, _ = backend.get_records(None, iterator, 10_000)
    assert len(first) == 12  # 12 x 900 KiB reaches 10 MiB; the call stops there
    iterator, rest, _ = backend.get_records(None, iterator, 10_000)
    assert len(rest) == 3


def test_explicit_hash_keys_and_unicode_keys_round_trip(backend: models.KinesisBackend) -> None:
    put(backend, b"one", key="clé-ü", hash_key="12345")
    put(backend, b"", key="empty payload")
    records = read(backend, "TRIM_HORIZON")
    assert [(r.partition_key, r.explicit_hash_key, r.to_json()["Data"]) for r in records] == [
        ("clé-ü", "12345", b"one"),
        ("empty payload", None, b""),
    ]


def test_expiry_frees_whole_segments_and_keeps_numbering(backend: models.KinesisBackend) -> None:
    for n in range(20):
        put(backend, f"old {n} ".encode() * 40)
    shard = backend.describe_stream(None, "log").shards["shardId-000000000000"]
    for n in range(1, 16):
        shard.records[n].created_at -= 7200
    assert kinesis_model.expire_records(shard, 3600, time.time()) == 15
    assert [r.sequence_number for r in read(backend, "TRIM_HORIZON")] == list(range(16, 21))
    assert shard.get_min_sequence_number() == 16
    assert 16 in shard.records and 15 not in shard.records and len(shard.records) == 5
    # Records before the oldest live one are gone, so AT_SEQUENCE_NUMBER 3 starts at 16.
    assert [r.sequence_number for r in read(backend, "AT_SEQUENCE_NUMBER", "3")] == [
        16,
        17,
        18,
        19,
        20,
    ]
    assert put(backend, b"new") == "21"


def test_split_and_merge_keep_records_where_kinesis_keeps_them(
    backend: models.KinesisBackend,
) -> None:
    for n in range(6):
        put(backend, f"before split {n}".encode(), key=f"k{n}")
    stream = backend.describe_stream(None, "log")
    backend.split_shard(None, "log", "shardId-000000000000", str(2**127))
    assert datas(read(backend, "TRIM_HORIZON")) == [f"before split {n}".encode() for n in range(6)]
    for n in range(10):
        put(backend, f"after split {n}".encode(), key=f"k{n}")
    children = [s for s in stream.shards.values() if s.is_open]
    assert len(children) == 2
    after = sorted(
        d for child in children for d in datas(read(backend, "TRIM_HORIZON", shard=child.shard_id))
    )
    assert after == sorted(f"after split {n}".encode() for n in range(10))

    first, second = sorted(child.shard_id for child in children)
    backend.merge_shards(None, "log", first, second)
    merged = next(s for s in stream.shards.values() if s.is_open)
    assert sorted(datas(read(backend, "TRIM_HORIZON", shard=merged.shard_id))) == after

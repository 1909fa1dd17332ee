"""The emulator's corrections to moto's models, on the models in this process: Kinesis retention
(hours can't pass in a test; the records' arrival times are moved back instead), S3 bodies kept
on disk, and model instances no longer tracked."""

from __future__ import annotations

import gc
import time
import weakref
from base64 import b64encode
from pathlib import Path

import pytest
from moto.core import common_models
from moto.kinesis import models

from stages.emulator import files, kinesis_model, moto_patches, s3_bodies


@pytest.fixture
def shard(monkeypatch: pytest.MonkeyPatch) -> models.Shard:
    moto_patches.apply(s3_memory_object_bytes=64 * 1024)
    monkeypatch.setattr(files, "SEGMENT_BYTES", 1000)  # a new file every ~3 records
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
    # Records 1-3 share the first file (a new one starts every 1,000 bytes).
    first_file = weakref.ref(shard.records[1]._storage)
    assert shard.records[3]._storage is first_file()
    assert shard.records[4]._storage is not first_file()

    age(shard, range(1, 8), 3600)
    assert kinesis_model.expire_records(shard, retention_seconds=600, now=time.time()) == 7
    assert payloads(shard, "0") == sent[7:]  # TRIM_HORIZON now starts at the first live one
    assert payloads(shard, "9") == sent[9:]
    gc.collect()
    assert first_file() is None  # closed, and being unlinked, its space is returned

    # Nothing else is old enough: nothing more goes.
    assert kinesis_model.expire_records(shard, retention_seconds=600, now=time.time()) == 0


def test_sequence_numbers_go_on_after_every_record_expired(shard: models.Shard) -> None:
    for i in range(5):
        put(shard, f"old {i}".encode())
    age(shard, range(1, 6), 3600)
    assert kinesis_model.expire_records(shard, retention_seconds=600, now=time.time()) == 5
    assert payloads(shard, "0") == []
    # A consumer checkpointed at 5 must see what comes next, numbered after it.
    assert put(shard, b"new") == "6"
    assert payloads(shard, "5") == [b"new"]
    assert shard.get_max_sequence_number() == 6


def test_s3_bodies_read_in_chunks_and_fail_once_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "SEGMENT_BYTES", 1000)
    store = files.SegmentedStore(tmp_path)
    body = s3_bodies.ObjectBody(store, threshold=100)
    data = bytes(range(256)) * 3
    body.seek(0)
    body.truncate()
    body.write(data)
    body.seek(0)
    assert [body.read(300), body.read(300), body.read(300), body.read(300)] == [
        data[:300],
        data[300:600],
        data[600:],
        b"",
    ]
    body.seek(0)
    assert body.read() == data
    body.close()
    # A GET that still holds an overwritten or deleted object must fail, not answer b"".
    with pytest.raises(ValueError):
        body.seek(0)
    with pytest.raises(ValueError):
        body.read()


def test_s3_body_files_are_freed_once_no_body_in_them_is_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "SEGMENT_BYTES", 1000)
    store = files.SegmentedStore(tmp_path)
    bodies = []
    for n in range(6):  # 400 bytes each: bodies 0-2 fill the first file, 3-5 the second
        body = s3_bodies.ObjectBody(store, threshold=100)
        body.write(bytes([n]) * 400)
        bodies.append(body)
    first_file = weakref.ref(bodies[0]._on_disk[0])  # type: ignore[index]
    last = bodies[-1]
    bodies[0].close()
    bodies[1].close()
    bodies[2].close()
    del bodies
    gc.collect()
    assert first_file() is None  # closed, and being unlinked, its space is returned
    last.seek(0)
    assert last.read() == bytes([5]) * 400


def test_models_are_no_longer_tracked_and_dict_models_still_build() -> None:
    moto_patches.apply(s3_memory_object_bytes=64 * 1024)

    class Plain(common_models.BaseModel):
        pass

    class Mapping(common_models.BaseModel, dict):  # as some moto models are
        pass

    Plain()
    made = Mapping(a=1)
    assert made["a"] == 1
    assert Plain.instances_tracked == []  # type: ignore[attr-defined]
    assert Mapping.instances_tracked == []  # type: ignore[attr-defined]


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> models.KinesisBackend:
    moto_patches.apply(s3_memory_object_bytes=64 * 1024)
    kinesis = models.KinesisBackend("us-east-1", "123456789012")
    kinesis.create_stream("two-shards", shard_count=2, stream_mode=None)
    return kinesis


def test_put_records_routes_by_key_and_keeps_kinesis_limits(
    backend: models.KinesisBackend,
) -> None:
    entries = [
        {"PartitionKey": f"key-{n}", "Data": b64encode(f"payload {n}".encode()).decode()}
        for n in range(40)
    ]
    answer = backend.put_records(None, "two-shards", entries)
    assert answer["FailedRecordCount"] == 0
    stream = backend.describe_stream(stream_arn=None, stream_name="two-shards")
    stored: dict[str, bytes] = {}
    for shard in stream.shards.values():
        for record in shard.get_records("0", None)[0]:
            stored[record.partition_key] = record.to_json()["Data"]
    assert stored == {f"key-{n}": f"payload {n}".encode() for n in range(40)}
    # Each record answered with the shard its key hashes to, in the order sent.
    for entry, result in zip(entries, answer["Records"], strict=True):
        shard = stream.get_shard_for_key(entry["PartitionKey"], None)
        assert result["ShardId"] == shard.shard_id
        assert shard.records[int(result["SequenceNumber"])].partition_key == entry["PartitionKey"]
    assert {r["ShardId"] for r in answer["Records"]} == set(stream.shards)

    big = {"PartitionKey": "k", "Data": b64encode(b"x" * (1024 * 1024)).decode()}
    with pytest.raises(models.RecordSizeExceedsLimit):
        backend.put_records(None, "two-shards", [entries[0], big])
    with pytest.raises(models.TooManyRecords):
        backend.put_records(None, "two-shards", entries * 13)


def test_cloudwatch_datapoints_of_kinesis_calls_are_bounded(
    backend: models.KinesisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kinesis_model, "MAX_CLOUDWATCH_DATUMS", 40)
    datums = models.cloudwatch_backends["123456789012"]["us-east-1"].metric_data
    entry = {"PartitionKey": "k", "Data": b64encode(b"data").decode()}
    for _ in range(200):
        backend.put_records(None, "two-shards", [entry])
    assert 40 <= len(datums) <= 50  # two per call, trimmed back to the newest 40
    assert datums[-1].value == 1  # the last call's IncomingRecords is still there

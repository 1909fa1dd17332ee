"""The emulator's memory does not grow with what it stores: S3 objects in a bucket and Kinesis
records within the retention period, measured on a real emulator process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psutil

from stages.common import aws, resources
from stages.common.config import Settings
from tests.support.processes import Process

WARM_OBJECTS = 1_100  # more than the emulator keeps cached, so the cache is full before measuring
OBJECTS = 2_500
WARM_RECORDS = 5_000
RECORDS = 40_000
# moto's own store: ~3,400 bytes per object and ~400 per Kinesis record.
MAX_BYTES_PER_OBJECT = 1000
MAX_BYTES_PER_RECORD = 60


def settled_rss(pid: int) -> int:
    """The lowest RSS over ~3 s: freed request buffers go back to the OS within
    MALLOC_TRIM_SECONDS (2), what is held stays."""
    process = psutil.Process(pid)
    lowest = process.memory_info().rss
    for _ in range(12):
        time.sleep(0.25)
        lowest = min(lowest, process.memory_info().rss)
    return lowest


def put_objects(settings: Settings, bucket: str, first: int, count: int) -> None:
    s3 = aws.client("s3", settings)
    body = b'{"service": "api", "message": "x"}\n' * 200  # 7 KB: a body kept in a shared file

    def put(n: int) -> None:
        name = (
            f"service=svc-{n % 6}/year=2026/month=12/day=04/hour={n % 24:02d}/"
            f"part-stage01-logs-stream-shardId-000000000001-{n:056d}-{n + 1:056d}.jsonl"
        )
        s3.put_object(Bucket=bucket, Key=name, Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(first, first + count)))


def put_records(settings: Settings, stream: str, first: int, count: int) -> None:
    kinesis = aws.client("kinesis", settings)
    for start in range(first, first + count, 500):
        answer = kinesis.put_records(
            StreamName=stream,
            Records=[
                {"Data": f"record {n:08d}".encode() * 4, "PartitionKey": f"key-{n}"}
                for n in range(start, min(start + 500, first + count))
            ],
        )
        assert answer["FailedRecordCount"] == 0


def test_memory_per_stored_object_and_record_is_bounded(
    emulator: tuple[Process, str], settings: Settings
) -> None:
    proc, _ = emulator
    bucket = resources.stream_for_kind(settings, "log").bucket
    stream = resources.stream_for_kind(settings, "log").name

    put_objects(settings, bucket, 0, WARM_OBJECTS)
    before = settled_rss(proc.pid)
    put_objects(settings, bucket, WARM_OBJECTS, OBJECTS)
    after_objects = settled_rss(proc.pid)
    per_object = (after_objects - before) / OBJECTS

    put_records(settings, stream, 0, WARM_RECORDS)
    before = settled_rss(proc.pid)
    put_records(settings, stream, WARM_RECORDS, RECORDS)
    after_records = settled_rss(proc.pid)
    per_record = (after_records - before) / RECORDS

    # Everything is still there.
    s3 = aws.client("s3", settings)
    listed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="service=svc-3/"
    ):
        listed += page.get("KeyCount", 0)
    assert listed == sum(1 for n in range(WARM_OBJECTS + OBJECTS) if n % 6 == 3)
    kinesis = aws.client("kinesis", settings)
    stored = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            stored += len(page["Records"])
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    assert stored == WARM_RECORDS + RECORDS

    assert per_object < MAX_BYTES_PER_OBJECT, f"{per_object:.0f} bytes per stored S3 object"
    assert per_record < MAX_BYTES_PER_RECORD, f"{per_record:.0f} bytes per stored Kinesis record"

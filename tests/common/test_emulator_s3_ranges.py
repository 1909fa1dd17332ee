"""Ranged GETs of large objects: the emulator reads only the range from its file.

Parquet readers (DuckDB, pyarrow, Spark) fetch a footer and a few column chunks of each file
with ranged GETs; the emulator used to read the whole object from disk for each of them. What the
emulator process read is its ``read_chars`` (Linux ``/proc/<pid>/io``: every byte it read
through a system call, files and sockets alike).
"""

from __future__ import annotations

import random

import psutil
import pytest
from botocore.exceptions import ClientError

from stages.common import aws, resources
from stages.common.config import Settings
from tests.support.processes import Process

OBJECT_BYTES = 16 * 1024 * 1024


def _read_chars(pid: int) -> int:
    return psutil.Process(pid).io_counters().read_chars  # type: ignore[attr-defined]


def test_a_ranged_get_of_a_large_object_reads_only_the_range(
    emulator: tuple[Process, str], settings: Settings
) -> None:
    proc, _ = emulator
    s3 = aws.client("s3", settings)
    bucket = next(iter(resources.buckets(settings)))
    body = random.Random(5).randbytes(OBJECT_BYTES)
    s3.put_object(Bucket=bucket, Key="lake/large.parquet", Body=body)
    last = OBJECT_BYTES - 1
    ranges = {
        "bytes=0-3": body[:4],
        f"bytes={last - 7}-{last}": body[-8:],
        "bytes=-65536": body[-65536:],  # a suffix range, as Parquet footers are read
        f"bytes={OBJECT_BYTES - 100_000}-": body[-100_000:],
        f"bytes={last - 100}-{last + 5_000}": body[-101:],  # an end past the object
        "bytes=1000000-1999999": body[1_000_000:2_000_000],
    }
    s3.get_object(Bucket=bucket, Key="lake/large.parquet", Range="bytes=0-0")  # key cache warm
    before = _read_chars(proc.pid)
    for spec, expected in ranges.items():
        got = s3.get_object(Bucket=bucket, Key="lake/large.parquet", Range=spec)
        assert got["Body"].read() == expected, spec
        assert got["ContentLength"] == len(expected)
        start = OBJECT_BYTES - len(expected) if spec.startswith("bytes=-") else None
        if start is not None:
            assert got["ContentRange"] == f"bytes {start}-{last}/{OBJECT_BYTES}"
    read = _read_chars(proc.pid) - before
    wanted = sum(len(v) for v in ranges.values())
    # The ranges, plus requests and key metadata; whole-object reads would be 6 x 16 MiB.
    assert read < wanted + 2 * 1024 * 1024, f"read {read:,} bytes for {wanted:,} asked"


def test_gets_the_range_handling_leaves_whole_still_answer_the_whole_object(
    settings: Settings,
) -> None:
    s3 = aws.client("s3", settings)
    bucket = next(iter(resources.buckets(settings)))
    body = random.Random(6).randbytes(300_000)
    s3.put_object(Bucket=bucket, Key="lake/whole.bin", Body=body)
    assert s3.get_object(Bucket=bucket, Key="lake/whole.bin")["Body"].read() == body
    # Several ranges in one request: S3 (and moto) answer the whole object.
    several = s3.get_object(Bucket=bucket, Key="lake/whole.bin", Range="bytes=0-9,20-29")
    assert several["Body"].read() == body
    small = b"kept in memory"
    s3.put_object(Bucket=bucket, Key="lake/small.bin", Body=small)
    got = s3.get_object(Bucket=bucket, Key="lake/small.bin", Range="bytes=5-6")["Body"].read()
    assert got == small[5:7]
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=bucket, Key="lake/whole.bin", Range="bytes=300000-300010")
    assert refused.value.response["Error"]["Code"] == "InvalidRange"

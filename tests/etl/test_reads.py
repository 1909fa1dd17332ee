"""The fold's obstore reader against a real emulator: the same lines as boto3 for plain,
multi-member gzip and multi-piece objects, a gzip bomb stopped at the cap, and a missing object
an error rather than an empty one."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pytest

from stages.common import aws, lake
from stages.common.config import Settings
from stages.common.errors import Unprocessable
from stages.etl.reads import RawReader

BUCKET = "md-raw-logs"


def test_the_reader_gives_the_lines_boto3_gives(lake_settings: Settings) -> None:
    s3 = aws.client("s3", lake_settings)
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * 200) for i in range(12000)]  # > 2 pieces
    body = b"\n".join(lines) + b"\n"
    half = body.index(b"\n", len(body) // 2) + 1
    objects = {
        "p.jsonl": body,
        "g.jsonl.gz": gzip.compress(body[:half]) + gzip.compress(body[half:]),
        "t.jsonl": b"a\nb",
    }
    for key, data in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    reader = RawReader(lake_settings)
    for key, data in objects.items():
        ours, theirs = lake.read_lines(reader, BUCKET, key), lake.read_lines(s3, BUCKET, key)
        assert ours.lines == theirs.lines, key
        assert ours.stored_bytes == len(data) == theirs.stored_bytes
        assert ours.ends_with_newline == theirs.ends_with_newline
    assert lake.read_lines(reader, BUCKET, "p.jsonl").lines == lines


def test_a_bomb_stops_at_the_cap_and_a_missing_object_is_an_error(
    lake_settings: Settings,
) -> None:
    s3 = aws.client("s3", lake_settings)
    s3.put_object(Bucket=BUCKET, Key="bomb.jsonl.gz", Body=gzip.compress(b"0" * (32 << 20)))
    reader = RawReader(lake_settings)
    read = lake.read_lines(reader, BUCKET, "bomb.jsonl.gz", max_bytes=2 * lake.PIECE_BYTES)
    assert read.truncated and read.content_bytes == 2 * lake.PIECE_BYTES and read.lines == []
    with pytest.raises(Unprocessable, match="more than this reader may read"):
        read.require_complete()
    with pytest.raises(FileNotFoundError):
        lake.read_lines(reader, BUCKET, "gone.jsonl")


def test_a_plain_object_is_read_whole_and_refused_above_the_cap(lake_settings: Settings) -> None:
    s3 = aws.client("s3", lake_settings)
    body = b"".join(b'{"n":%d}\n' % i for i in range(50000))
    s3.put_object(Bucket=BUCKET, Key="whole.jsonl", Body=body)
    reader = RawReader(lake_settings)
    assert reader.read_plain(BUCKET, "whole.jsonl") == body
    with pytest.raises(Unprocessable, match="more than this reader may read"):
        reader.read_plain(BUCKET, "whole.jsonl", max_bytes=len(body) - 1)
    with pytest.raises(FileNotFoundError):
        reader.read_plain(BUCKET, "gone.jsonl")


def test_put_uploads_an_arrow_buffer_boto3_reads_back(lake_settings: Settings) -> None:
    data = pa.py_buffer(bytes(range(256)) * 1000)
    RawReader(lake_settings).put("s3://md-processed/t/data/service=a/x.parquet", data)
    s3 = aws.client("s3", lake_settings)
    got = s3.get_object(Bucket="md-processed", Key="t/data/service=a/x.parquet")["Body"].read()
    assert got == data.to_pybytes()
    with pytest.raises(ValueError, match="not an s3:// location"):
        RawReader(lake_settings).put("/tmp/x.parquet", data)

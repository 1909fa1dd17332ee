"""The fold's obstore reader against a real emulator: the same lines as boto3 for plain,
multi-member gzip and multi-piece objects, a gzip bomb stopped at the cap, and a missing object
an error rather than an empty one."""

from __future__ import annotations

import gzip

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

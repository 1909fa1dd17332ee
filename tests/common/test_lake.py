"""The lake's shared layout and reading: keys byte for byte and back, listing, capped reading."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from stages.common import lake
from stages.common.errors import Unprocessable
from stages.consumer.batcher import PartitionBuffer
from stages.consumer.partitioner import Partition, dead_letter_partition, route
from stages.consumer.writer import object_key

FIRST = "49590338271490256608559692538361571095921575989136588898"
LAST = "49590338271490256608559692540925702759324208523137515618"
ARRIVAL = datetime(2026, 11, 27, 6, 30, tzinfo=UTC)


def _buffer(first: str, last: str) -> PartitionBuffer:
    buf = PartitionBuffer()
    buf.first_sequence = first
    buf.last_sequence = last
    return buf


def test_the_consumer_names_a_service_object_as_the_lake_module_formats_it() -> None:
    routed = route(b'{"service":"api-gateway","timestamp":"2026-11-27T06:12:00Z"}', ARRIVAL, "s")
    key = object_key(
        "logs-stream", "shardId-000000000001", routed.partition, _buffer(FIRST, LAST), "none"
    )
    assert key == (
        "service=api-gateway/year=2026/month=11/day=27/hour=06/"
        f"part-logs-stream-shardId-000000000001-{FIRST}-{LAST}.jsonl"
    )
    parsed = lake.parse_key(key)
    assert parsed == lake.ObjectKey(
        partition="service=api-gateway/year=2026/month=11/day=27/hour=06",
        stream="logs-stream",
        shard_id="shardId-000000000001",
        first_sequence=FIRST,
        last_sequence=LAST,
        compression="none",
    )
    assert str(parsed) == key and not parsed.dead_letter


def test_dead_letter_and_gzip_keys_round_trip_with_short_sequence_numbers_padded() -> None:
    partition = dead_letter_partition("md-raw-logs", ARRIVAL)
    key = object_key("md-raw-logs", "shardId-000000000000", partition, _buffer("7", "12"), "gzip")
    assert key == (
        "_dead-letter/stream=md-raw-logs/year=2026/month=11/day=27/hour=06/"
        f"part-md-raw-logs-shardId-000000000000-{'7'.zfill(56)}-{'12'.zfill(56)}.jsonl.gz"
    )
    parsed = lake.parse_key(key)
    assert (parsed.stream, parsed.shard_id) == ("md-raw-logs", "shardId-000000000000")
    assert (parsed.first_sequence, parsed.last_sequence) == ("7", "12")
    assert parsed.compression == "gzip" and parsed.dead_letter
    assert str(parsed) == key
    assert lake.is_hidden(key) and lake.is_gzip(key)
    assert lake.parse_service_hour(key) is None


@pytest.mark.parametrize(
    "key",
    [
        "service=a/year=2026/month=11/day=27/hour=06/notes.txt",
        f"part-s-shardId-000000000000-{FIRST}-{LAST}.jsonl",  # no partition
        f"service=a/part-s-shardId-0-{FIRST[:20]}-{LAST}.jsonl",  # short sequence
        f"service=a/part-s-shardId-0-{FIRST}-{LAST}.json",
    ],
)
def test_keys_the_consumer_does_not_write_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not a consumer-written lake key"):
        lake.parse_key(key)


def test_partition_paths_pad_every_field() -> None:
    assert lake.hour_of(datetime(999, 1, 2, 3, tzinfo=UTC)) == "year=0999/month=01/day=02/hour=03"
    partition = lake.service_partition("auth", lake.hour_path(2026, 3, 4, 5))
    assert lake.prefix(partition) == "service=auth/year=2026/month=03/day=04/hour=05/"
    hour = lake.parse_service_hour(f"{lake.prefix(partition)}x.jsonl")
    assert hour == lake.ServiceHour("auth", "2026", "03", "04", "05")


class PagedS3:
    """ListObjectsV2 with a page size, and GetObject over an in-memory bucket."""

    def __init__(self, objects: dict[str, bytes], page: int = 2) -> None:
        self.objects = objects
        self.page = page
        self.list_calls = 0

    def list_objects_v2(self, **kw: Any) -> dict[str, Any]:
        self.list_calls += 1
        keys = sorted(k for k in self.objects if k.startswith(kw.get("Prefix", "")))
        start = int(kw.get("ContinuationToken", "0"))
        chunk = keys[start : start + self.page]
        more = start + self.page < len(keys)
        page: dict[str, Any] = {
            "Contents": [{"Key": k, "Size": len(self.objects[k])} for k in chunk],
            "IsTruncated": more,
        }
        if more:
            page["NextContinuationToken"] = str(start + self.page)
        return page

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[Key])}


def test_listing_follows_every_page_under_the_prefix_and_can_be_stopped() -> None:
    s3 = PagedS3({f"a/{i}": b"" for i in range(5)} | {"b/0": b""})
    assert [o["Key"] for o in lake.list_objects(s3, "bucket", "a/")] == [f"a/{i}" for i in range(5)]
    assert s3.list_calls == 3
    calls = iter([True, False])
    with pytest.raises(lake.ListingStopped):
        list(lake.list_pages(s3, "bucket", "a/", before_call=lambda: next(calls)))


def test_lines_of_plain_and_multi_member_gzip_objects() -> None:
    lines = [b'{"n":%d}' % i for i in range(3000)]
    body = b"\n".join(lines) + b"\n"
    half = body.index(b"\n", len(body) // 2) + 1
    members = gzip.compress(body[:half]) + gzip.compress(body[half:])
    s3 = PagedS3({"p.jsonl": body, "g.jsonl.gz": members, "t.jsonl": b"a\nb", "e.jsonl": b""})
    plain = lake.read_lines(s3, "b", "p.jsonl")
    assert plain.lines == lines and plain.stored_bytes == len(body) and not plain.truncated
    packed = lake.read_lines(s3, "b", "g.jsonl.gz")
    assert packed.lines == lines and packed.content_bytes == len(body)
    assert packed.stored_bytes == len(members)
    assert plain.ends_with_newline and packed.ends_with_newline
    tail = lake.read_lines(s3, "b", "t.jsonl")
    assert tail.lines == [b"a", b"b"] and not tail.ends_with_newline
    empty = lake.read_lines(s3, "b", "e.jsonl")
    assert empty.lines == [] and not empty.ends_with_newline


def test_a_gzip_bomb_stops_at_the_cap_and_says_so() -> None:
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024))
    s3 = PagedS3({"bomb.jsonl.gz": bomb, "big.jsonl": b"x\n" * 1000})
    read = lake.read_lines(s3, "b", "bomb.jsonl.gz", max_bytes=3 * lake.PIECE_BYTES)
    assert read.truncated and read.content_bytes == 3 * lake.PIECE_BYTES and read.lines == []
    with pytest.raises(Unprocessable, match="more than this reader may read"):
        read.require_complete()
    plain = lake.read_lines(s3, "b", "big.jsonl", max_bytes=11)
    assert plain.truncated and plain.lines == [b"x"] * 5


def test_broken_gzip_is_an_error_not_an_empty_object() -> None:
    body = gzip.compress(b'{"a":1}\n' * 100)
    s3 = PagedS3({"cut.jsonl.gz": body[:-10], "text.jsonl.gz": b"plain text\n"})
    with pytest.raises(Unprocessable, match="truncated gzip stream"):
        lake.read_lines(s3, "b", "cut.jsonl.gz")
    with pytest.raises(Unprocessable, match="not valid gzip"):
        lake.read_lines(s3, "b", "text.jsonl.gz")


def test_the_consumer_partition_type_is_what_the_lake_module_formats() -> None:
    assert dead_letter_partition("s", ARRIVAL) == Partition(
        lake.dead_letter_partition("s", "year=2026/month=11/day=27/hour=06"), dead_letter=True
    )

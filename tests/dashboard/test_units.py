"""The dashboard's pure pieces: ranged reading, sampling, metric parsing, partition totals."""

from __future__ import annotations

import gzip
import io
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from stages.common.errors import NotFound, StagesError, Unavailable, Unprocessable
from stages.common.lake import Inflater
from stages.dashboard.app import aws_errors
from stages.dashboard.buckets import BucketScan, LakeReader
from stages.dashboard.consumer import ConsumerMetrics, parse_metrics
from stages.dashboard.partitions import analyse
from stages.dashboard.sampler import Sampler
from stages.dashboard.viewer import FIRST_RANGE_BYTES, read_first_lines


class RangeS3:
    """Serves one object's byte ranges the way S3 does, and records every range asked for."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.ranges: list[tuple[int, int]] = []

    def get_object(self, Bucket: str, Key: str, Range: str) -> dict[str, Any]:
        first, last = (int(n) for n in Range.removeprefix("bytes=").split("-"))
        self.ranges.append((first, last))
        piece = self.body[first : last + 1]
        return {
            "Body": io.BytesIO(piece),
            "ContentRange": f"bytes {first}-{first + len(piece) - 1}/{len(self.body)}",
        }


def _lines(count: int, width: int = 100) -> bytes:
    return b"".join(f"{i:0{width}d}\n".encode() for i in range(count))


def test_ranges_continue_where_the_last_ended_and_grow() -> None:
    s3 = RangeS3(_lines(2_000))
    excerpt = read_first_lines(s3, "b", "k.jsonl", 400, max_bytes=10**9, max_inflated=10**9)
    assert len(excerpt.lines) == 400
    assert excerpt.lines[399] == f"{399:0100d}".encode()
    assert s3.ranges[0] == (0, FIRST_RANGE_BYTES - 1)
    for (_, end), (start, _) in zip(s3.ranges, s3.ranges[1:], strict=False):
        assert start == end + 1  # no byte is fetched twice
    assert excerpt.bytes_read == sum(last - first + 1 for first, last in s3.ranges)
    assert excerpt.bytes_read < len(s3.body) / 2


def test_a_read_stops_at_the_byte_bound_and_says_so() -> None:
    s3 = RangeS3(_lines(10_000))
    excerpt = read_first_lines(s3, "b", "k.jsonl", 5_000, max_bytes=64 * 1024, max_inflated=10**9)
    assert excerpt.truncated is True and excerpt.complete is False
    assert excerpt.bytes_read == 64 * 1024
    assert len(excerpt.lines) == 64 * 1024 // 101


def test_a_last_line_without_newline_and_an_empty_object() -> None:
    excerpt = read_first_lines(
        RangeS3(b"a\nb"), "b", "k.jsonl", 10, max_bytes=1024, max_inflated=10**9
    )
    assert (excerpt.lines, excerpt.complete) == ([b"a", b"b"], True)


def test_gzip_is_decompressed_as_a_stream_and_bad_gzip_is_a_422() -> None:
    body = gzip.compress(_lines(50_000, width=20))
    s3 = RangeS3(body)
    excerpt = read_first_lines(s3, "b", "k.jsonl.gz", 10, max_bytes=10**9, max_inflated=10**9)
    assert excerpt.lines == [f"{i:020d}".encode() for i in range(10)]
    assert excerpt.bytes_read == FIRST_RANGE_BYTES < len(body)
    with pytest.raises(Unprocessable, match="not valid gzip"):
        read_first_lines(
            RangeS3(b"plain text\n"), "b", "k.jsonl.gz", 10, max_bytes=1024, max_inflated=10**9
        )
    with pytest.raises(Unprocessable, match="truncated gzip"):
        read_first_lines(
            RangeS3(body[:100]), "b", "k.jsonl.gz", 10**6, max_bytes=1024, max_inflated=10**9
        )


def test_the_inflater_follows_concatenated_members_and_stops_at_its_limit() -> None:
    two = gzip.compress(b"a\nb\n") + gzip.compress(b"c\n" * 1000)
    whole = Inflater("k.gz", 10**6)
    assert (
        b"".join(whole.feed(two[:7])) + b"".join(whole.feed(two[7:])) == b"a\nb\n" + b"c\n" * 1000
    )
    whole.finish()
    assert not whole.capped and whole.inflated == 2004

    capped = Inflater("k.gz", 100)
    assert len(b"".join(capped.feed(two))) == 100
    assert capped.capped
    capped.finish()  # stopping at the limit is not a truncated stream


METRICS = """\
# TYPE consumer_records_in_total counter
consumer_records_in_total{stream="s1"} 100.0
consumer_records_in_total{stream="s2"} 10.0
# TYPE consumer_records_out_total counter
consumer_records_out_total{stream="s1"} 90.0
# TYPE consumer_millis_behind_latest gauge
consumer_millis_behind_latest{shard="shardId-0",stream="s1"} 250.0
consumer_millis_behind_latest{shard="shardId-1",stream="s1"} 1500.0
"""


def test_consumer_metrics_are_parsed_by_stream_and_shard() -> None:
    parsed = parse_metrics(METRICS)
    assert parsed.total("records_in") == 110
    assert parsed.total("records_in", "s2") == 10
    assert parsed.millis_behind == {("s1", "shardId-0"): 250.0, ("s1", "shardId-1"): 1500.0}


def test_rates_come_from_two_scrapes_gaps_stay_gaps_and_restarts_count_from_zero() -> None:
    scrapes: list[ConsumerMetrics | None] = [
        parse_metrics(METRICS),
        parse_metrics(METRICS.replace("} 100.0", "} 150.0")),
        None,
        parse_metrics(METRICS.replace("} 100.0", "} 20.0")),
        parse_metrics(METRICS.replace("} 100.0", "} 40.0")),
    ]
    times = iter([0.0, 10.0, 20.0, 30.0, 40.0])
    sampler = Sampler(
        lambda: scrapes.pop(0), ("s1", "s2"), period=10, capacity=3, clock=lambda: next(times)
    )
    first = sampler.sample_once()
    assert first.records_in_per_s["s1"] is None and first.max_lag_ms["s1"] == 1500.0
    assert sampler.sample_once().records_in_per_s["s1"] == 5.0  # 50 records in 10 s
    assert sampler.sample_once().records_in_per_s["s1"] is None  # scrape failed: a gap
    assert sampler.sample_once().records_in_per_s["s1"] is None  # no previous scrape
    assert sampler.sample_once().records_in_per_s["s1"] == 2.0
    series = sampler.series(100)
    assert series["t"] == [20.0, 30.0, 40.0]  # the ring buffer holds 3
    assert series["records_in_per_s"]["s2"] == [None, None, 0.0]


LIMITS: dict[str, int] = {"max_s3_calls": 100, "max_inflated": 10**9}


class ListingS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.gets = 0

    def list_objects_v2(self, Bucket: str, Prefix: str = "", **_: Any) -> dict[str, Any]:
        keys = sorted(k for k in self.objects if k.startswith(Prefix))
        return {
            "Contents": [{"Key": k, "Size": len(self.objects[k])} for k in keys],
            "IsTruncated": False,
        }

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.gets += 1
        return {"Body": io.BytesIO(self.objects[Key])}


def test_record_counts_stay_within_budget_and_unknown_parts_make_unknown_totals() -> None:
    hour = "year=2026/month=11/day=27/hour="
    s3 = ListingS3(
        {
            f"service=a/{hour}05/p1.jsonl": b"1\n2\n",
            f"service=a/{hour}06/p1.jsonl": b"1\n2\n3\n",
            f"service=b/{hour}06/p1.jsonl": b"x" * 1000 + b"\n",
        }
    )
    reader = LakeReader(s3, ("lake",), cache_seconds=60)
    scan = reader.scan("lake")
    assert isinstance(scan, BucketScan) and scan.objects == 3

    tree = analyse(reader, scan, service=None, small_file_bytes=1, count_budget=10, **LIMITS)
    by_service = {s["service"]: s for s in tree["services"]}
    hours = {h["hour"]: h["records"] for h in by_service["a"]["days"][0]["hours"]}
    assert hours == {"05": 2, "06": 3}
    assert by_service["a"]["records"] == 5
    assert by_service["b"]["records"] is None  # 1,001 bytes is over the budget of 10

    gets = s3.gets
    analyse(reader, scan, service="a", small_file_bytes=1, count_budget=10, **LIMITS)
    assert s3.gets == gets  # unchanged partitions are not read again

    s3.objects[f"service=a/{hour}06/p2.jsonl"] = b"4\n"
    grown = analyse(
        reader,
        reader.scan("lake", fresh=True),
        service="a",
        small_file_bytes=1,
        count_budget=10,
        **LIMITS,
    )
    assert grown["services"][0]["days"][0]["hours"][1]["records"] == 4
    assert s3.gets == gets + 1  # only the new object was read


def test_a_bomb_behind_a_growing_gzip_partition_is_found_out_and_not_inflated_again() -> None:
    """The newest partition gets a new gzip object before every refresh and takes part of the
    decompression cap first; the bomb in an older partition must still be recognised as too
    big on its own instead of being inflated up to the rest of the cap on every refresh."""
    newest = "service=a/year=2026/month=11/day=27/hour=06/"
    bomb_key = "service=a/year=2026/month=11/day=27/hour=05/bomb.jsonl.gz"
    s3 = ListingS3({bomb_key: gzip.compress(bytes(8 * 1024 * 1024))})
    reader = LakeReader(s3, ("lake",), cache_seconds=0)
    limits = {"max_s3_calls": 100, "max_inflated": 1024 * 1024}
    answers = []
    for refresh in range(4):
        s3.objects[f"{newest}p{refresh}.jsonl.gz"] = gzip.compress(b"{}\n" * 1000)
        answers.append(
            analyse(
                reader,
                reader.scan("lake", fresh=True),
                service=None,
                small_file_bytes=1,
                count_budget=10**7,
                **limits,
            )
        )
    last = answers[-1]
    assert last["cut_short"] is False, [a["cut_reason"] for a in answers]
    hours = {h["hour"]: h for h in last["services"][0]["days"][0]["hours"]}
    assert hours["06"]["records"] == 4000
    assert hours["05"]["records"] is None
    assert "decompresses to more than 1048576 bytes" in hours["05"]["uncounted"]


def test_a_slow_listing_is_reused_for_longer() -> None:
    now = [0.0]

    class SlowS3(ListingS3):
        def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
            now[0] += 2.0  # every listing takes 2 s
            return super().list_objects_v2(**kwargs)

    s3 = SlowS3({"a": b"1"})
    reader = LakeReader(s3, ("lake",), cache_seconds=5, clock=lambda: now[0])
    first = reader.scan("lake")
    now[0] += 15  # older than the 5 s cache, younger than 10 x 2 s
    assert reader.scan("lake") is first
    now[0] += 10
    assert reader.scan("lake") is not first
    assert reader.scan("lake", fresh=True).scanned_at > first.scanned_at


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"), NotFound),
        # Real S3 refuses a continuation token it did not issue (the emulator ignores it).
        (ClientError({"Error": {"Code": "InvalidArgument"}}, "ListObjectsV2"), Unprocessable),
        (ClientError({"Error": {"Code": "SlowDown"}}, "ListObjectsV2"), Unavailable),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), Unavailable),
    ],
)
def test_aws_failures_become_answers_the_page_can_show(
    error: Exception, expected: type[StagesError]
) -> None:
    with pytest.raises(expected, match="listing md-raw-logs"), aws_errors("listing md-raw-logs"):
        raise error

"""Read-only views of the lake's buckets: totals, a prefix browser and partition analysis.

Totals walk every page of ListObjectsV2 (a bucket is never "1,000 objects"), so a summary is
cached for a few seconds: a page refreshing every 10 s does not re-list a big bucket each time,
while ``fresh=True`` always lists again for an exact answer. Keys and prefixes go to S3 as given
and are never used as file paths.
"""

from __future__ import annotations

import gzip
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stages.common.errors import NotFound
from stages.dashboard.metrics import S3_BYTES_READ, S3_LIST_CALLS

# A lake key: service=<svc>/year=YYYY/month=MM/day=DD/hour=HH/<object>
_PARTITION = re.compile(
    r"^service=(?P<service>[^/]+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/"
    r"day=(?P<day>\d{2})/hour=(?P<hour>\d{2})/"
)
# Partition analysis keeps at most this many hour partitions per bucket in memory.
MAX_PARTITIONS = 20_000
# A summary is reused for at least this many times as long as its listing took.
SLOW_LISTING_FACTOR = 10
# Line counts kept per object (about 200 bytes each).
MAX_COUNTED_OBJECTS = 200_000


@dataclass
class PartitionStats:
    objects: int = 0
    bytes: int = 0


@dataclass
class BucketScan:
    """Everything one full listing of a bucket tells: totals and per-hour partition sizes."""

    bucket: str
    objects: int = 0
    bytes: int = 0
    other_objects: int = 0  # keys outside service=/year=/... (dead letters, manual uploads)
    partitions: dict[tuple[str, str, str], PartitionStats] = field(default_factory=dict)
    partitions_truncated: bool = False
    scanned_at: float = 0.0  # the reader's clock (monotonic): for cache ages only
    listed_at: float = 0.0  # unix seconds, for people
    list_calls: int = 0
    duration_seconds: float = 0.0

    def add(self, key: str, size: int) -> None:
        self.objects += 1
        self.bytes += size
        match = _PARTITION.match(key)
        if match is None:
            self.other_objects += 1
            return
        day = f"{match['year']}-{match['month']}-{match['day']}"
        slot = (match["service"], day, match["hour"])
        stats = self.partitions.get(slot)
        if stats is None:
            if len(self.partitions) >= MAX_PARTITIONS:
                self.partitions_truncated = True
                return
            stats = self.partitions[slot] = PartitionStats()
        stats.objects += 1
        stats.bytes += size


def hour_prefix(service: str, day: str, hour: str) -> str:
    year, month, dom = day.split("-")
    return f"service={service}/year={year}/month={month}/day={dom}/hour={hour}/"


class LakeReader:
    """The configured buckets, read through one S3 client."""

    def __init__(
        self,
        s3: Any,
        buckets: tuple[str, ...],
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s3 = s3
        self.buckets = buckets
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._scans: dict[str, BucketScan] = {}
        # One lock per bucket: concurrent refreshes wait for the listing in progress and reuse
        # it instead of listing the same bucket twice.
        self._locks = {bucket: threading.Lock() for bucket in buckets}
        # (bucket, hour prefix) -> (objects, bytes, records) when last counted.
        self._partition_counts: dict[tuple[str, str], tuple[int, int, int]] = {}
        # (bucket, key) -> (size, lines) of every object counted so far.
        self._object_lines: dict[tuple[str, str], tuple[int, int]] = {}

    def check_bucket(self, bucket: str) -> str:
        if bucket not in self.buckets:
            raise NotFound(
                f"bucket {bucket!r} is not one of the dashboard's buckets",
                detail={"buckets": list(self.buckets)},
            )
        return bucket

    # --- totals -------------------------------------------------------------------------
    def scan(self, bucket: str, *, fresh: bool = False) -> BucketScan:
        self.check_bucket(bucket)
        requested = self.clock()
        with self._locks[bucket]:
            cached = self._scans.get(bucket)
            if cached is not None and self._usable(cached, requested, fresh):
                return cached
            scan = self._list_everything(bucket)
            self._scans[bucket] = scan
            return scan

    def _usable(self, scan: BucketScan, requested: float, fresh: bool) -> bool:
        if fresh:
            # A listing that started after this request did is as fresh as a new one.
            return scan.scanned_at - scan.duration_seconds >= requested
        # A bucket that takes long to list is listed proportionally less often, so watching a
        # big lake never keeps the dashboard listing it back to back.
        max_age = max(self.cache_seconds, SLOW_LISTING_FACTOR * scan.duration_seconds)
        return self.clock() - scan.scanned_at < max_age

    def _list_everything(self, bucket: str) -> BucketScan:
        started = self.clock()
        scan = BucketScan(bucket)
        for page in self._pages(Bucket=bucket):
            scan.list_calls += 1
            for item in page.get("Contents", []):
                scan.add(item["Key"], int(item["Size"]))
        scan.scanned_at = self.clock()
        scan.listed_at = time.time()
        scan.duration_seconds = scan.scanned_at - started
        return scan

    def _pages(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            S3_LIST_CALLS.inc()
            page = self.s3.list_objects_v2(**kwargs)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    # --- browser ------------------------------------------------------------------------
    def list_level(self, bucket: str, prefix: str, token: str | None, limit: int) -> dict[str, Any]:
        """One page of the folder view under ``prefix``: sub-prefixes and objects."""
        self.check_bucket(bucket)
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Prefix": prefix,
            "Delimiter": "/",
            "MaxKeys": limit,
        }
        if token:
            kwargs["ContinuationToken"] = token
        S3_LIST_CALLS.inc()
        page = self.s3.list_objects_v2(**kwargs)
        return {
            "bucket": bucket,
            "prefix": prefix,
            "prefixes": [p["Prefix"] for p in page.get("CommonPrefixes", [])],
            "objects": [
                {
                    "key": item["Key"],
                    "size": int(item["Size"]),
                    "last_modified": item["LastModified"].isoformat(),
                }
                for item in page.get("Contents", [])
            ],
            "next_token": page.get("NextContinuationToken") if page.get("IsTruncated") else None,
        }

    # --- record counts ------------------------------------------------------------------
    def partition_records(
        self, bucket: str, prefix: str, stats: PartitionStats, budget: int
    ) -> tuple[int | None, int]:
        """Records (lines) in the partition under ``prefix`` and the bytes read to count them.

        Only objects not counted before are read: lake objects are written once (a rewrite after
        a crash has the same content), so a partition that grows costs only its new objects.
        None when those would take more than ``budget`` bytes: the count stays unknown rather
        than making a page refresh read a large partition.
        """
        cached = self._partition_counts.get((bucket, prefix))
        if cached is not None and cached[:2] == (stats.objects, stats.bytes):
            return cached[2], 0
        objects = [
            (item["Key"], int(item["Size"]))
            for page in self._pages(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        uncounted = [(key, size) for key, size in objects if not self._counted(bucket, key, size)]
        cost = sum(size for _, size in uncounted)
        if cost > budget:
            return None, 0
        for key, size in uncounted:
            self._count_object(bucket, key, size)
        records = sum(self._object_lines[(bucket, key)][1] for key, _ in objects)
        self._partition_counts[(bucket, prefix)] = (stats.objects, stats.bytes, records)
        return records, cost

    def _counted(self, bucket: str, key: str, size: int) -> bool:
        known = self._object_lines.get((bucket, key))
        return known is not None and known[0] == size

    def _count_object(self, bucket: str, key: str, size: int) -> None:
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        S3_BYTES_READ.labels("count").inc(len(body))
        if len(self._object_lines) >= MAX_COUNTED_OBJECTS:
            # Bounded memory: forget everything and count again on demand.
            self._object_lines.clear()
        self._object_lines[(bucket, key)] = (size, count_lines(key, body))


def count_lines(key: str, body: bytes) -> int:
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)

"""Read-only views of the lake's buckets: totals, a prefix browser and partition analysis.

Totals walk every page of ListObjectsV2 (a bucket is never "1,000 objects"), so a summary is
cached for a few seconds: a page refreshing every 10 s does not re-list a big bucket each time,
while ``fresh=True`` always lists again for an exact answer. Keys and prefixes go to S3 as given
and are never used as file paths.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stages.common import lake
from stages.common.errors import NotFound, Unprocessable
from stages.common.lake import Inflater
from stages.dashboard.metrics import S3_BYTES_INFLATED, S3_BYTES_READ, S3_LIST_CALLS

# Partition analysis keeps at most this many hour partitions per bucket in memory.
MAX_PARTITIONS = 20_000
# A summary is reused for at least this many times as long as its listing took.
SLOW_LISTING_FACTOR = 10
# Line counts kept per object; the bound keeps the dashboard's memory flat on a large lake.
MAX_COUNTED_OBJECTS = 200_000
# What is known about counting each hour partition, over all buckets.
MAX_COUNTED_PARTITIONS = 4 * MAX_PARTITIONS
# Gzip objects remembered per bucket for a retry with the whole decompression cap.
MAX_SUSPECTS = 100


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
        where = lake.parse_service_hour(key)
        if where is None:
            self.other_objects += 1
            return
        day = f"{where.year}-{where.month}-{where.day}"
        slot = (where.service, day, where.hour)
        stats = self.partitions.get(slot)
        if stats is None:
            if len(self.partitions) >= MAX_PARTITIONS:
                self.partitions_truncated = True
                return
            stats = self.partitions[slot] = PartitionStats()
        stats.objects += 1
        stats.bytes += size


@dataclass
class PartitionCount:
    """What is known about counting one hour partition at a given (objects, bytes)."""

    size: tuple[int, int]
    records: int | None = None
    cost: int = 0  # bytes not counted yet, when records is None
    why: str | None = None  # why it cannot be counted while unchanged


@dataclass
class CountAllowance:
    """What one partition request may still spend on counting records, and what it spent."""

    bytes: int  # object bytes to read (DASHBOARD_COUNT_BUDGET_BYTES)
    s3_calls: int  # ListObjectsV2 and GetObject calls (DASHBOARD_PARTITION_S3_CALLS)
    inflated: int  # bytes to decompress (DASHBOARD_MAX_DECOMPRESSED_BYTES)
    max_inflated: int = 0
    calls_made: int = 0
    cut: str | None = None  # why counting stopped before every partition was looked at

    def __post_init__(self) -> None:
        self.max_inflated = self.max_inflated or self.inflated
        self._max_calls = self.s3_calls

    def take_call(self) -> bool:
        if self.s3_calls <= 0:
            self.cut = f"{self._max_calls} S3 calls made (DASHBOARD_PARTITION_S3_CALLS)"
            return False
        self.s3_calls -= 1
        self.calls_made += 1
        return True


def hour_prefix(service: str, day: str, hour: str) -> str:
    """The listing prefix of a partition analysis slot (``day`` is YYYY-MM-DD)."""
    year, month, dom = day.split("-")
    return lake.prefix(
        lake.service_partition(service, lake.hour_path_of_digits(year, month, dom, hour))
    )


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
        # Concurrent partition requests count one after the other, the later one reusing what
        # the earlier counted, so N open pages do not make N times the S3 calls.
        self.counting = {bucket: threading.Lock() for bucket in buckets}
        # (bucket, hour prefix) -> what counting it found last time.
        self._partition_counts: dict[tuple[str, str], PartitionCount] = {}
        # bucket -> {key: size} of gzip objects to count first next time (see settle_suspects).
        self._suspects: dict[str, dict[str, int]] = {}
        # (bucket, key) -> (size, lines or None, why not) of every object counted so far.
        self._object_lines: dict[tuple[str, str], tuple[int, int | None, str | None]] = {}

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
        for page in lake.list_pages(self.s3, bucket, before_call=_count_list_call):
            scan.list_calls += 1
            for item in page.get("Contents", []):
                scan.add(item["Key"], int(item["Size"]))
        scan.scanned_at = self.clock()
        scan.listed_at = time.time()
        scan.duration_seconds = scan.scanned_at - started
        return scan

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
        self, bucket: str, prefix: str, stats: PartitionStats, allowance: CountAllowance
    ) -> tuple[int | None, str | None]:
        """Records (lines) in the partition under ``prefix``, or None and why not.

        Only objects not counted before are read: lake objects are written once (a rewrite after
        a crash has the same content), so a partition that grows costs only its new objects.
        Every answer is remembered while the partition's objects and bytes stay the same: a count,
        an object that cannot be counted, or the bytes counting would take (a partition over the
        byte budget is not listed again on every refresh). Listing and reading stop when
        ``allowance`` is spent; what was counted so far is kept for the next request.
        """
        slot = (bucket, prefix)
        known = self._partition_counts.get(slot)
        if known is not None and known.size == (stats.objects, stats.bytes):
            if known.records is not None or known.why is not None:
                return known.records, known.why
            if known.cost > allowance.bytes:
                return None, over_budget(known.cost)
        if allowance.cut is not None:
            return None, f"not reached: {allowance.cut}"
        objects = self._list_partition(bucket, prefix, allowance)
        if objects is None:
            return None, f"not reached: {allowance.cut}"
        uncounted = [(key, size) for key, size in objects if not self._counted(bucket, key, size)]
        cost = sum(size for _, size in uncounted)
        if len(self._partition_counts) >= MAX_COUNTED_PARTITIONS:
            self._partition_counts.clear()
        self._partition_counts[slot] = PartitionCount((stats.objects, stats.bytes), cost=cost)
        if cost > allowance.bytes:
            return None, over_budget(cost)
        for key, size in uncounted:
            if not self._count_object(bucket, key, size, allowance):
                return None, f"not reached: {allowance.cut}"
        records = 0
        for key, _ in objects:
            entry = self._object_lines.get((bucket, key))
            if entry is None:
                # Forgotten meanwhile (the per-object memory is bounded): counted next time.
                return None, "not reached: counts of its objects were forgotten"
            _, lines, why = entry
            if lines is None:
                # Remembered with the partition, so it is not read again on every refresh.
                self._partition_counts[slot] = PartitionCount((stats.objects, stats.bytes), why=why)
                return None, why
            records += lines
        self._partition_counts[slot] = PartitionCount((stats.objects, stats.bytes), records)
        return records, None

    def settle_suspects(self, bucket: str, allowance: CountAllowance) -> None:
        """Count first the gzip objects an earlier request stopped in with part of the cap
        already spent: with the whole cap each one is either counted or known as too big, so a
        bomb is not inflated again and again behind partitions that are counted before it."""
        suspects = self._suspects.get(bucket, {})
        for key, size in list(suspects.items()):
            if allowance.inflated < allowance.max_inflated or size > allowance.bytes:
                return
            del suspects[key]
            if not self._counted(bucket, key, size):
                self._count_object(bucket, key, size, allowance)

    def _list_partition(
        self, bucket: str, prefix: str, allowance: CountAllowance
    ) -> list[tuple[str, int]] | None:
        def take_call() -> bool:
            return allowance.take_call() and _count_list_call()

        objects: list[tuple[str, int]] = []
        try:
            for page in lake.list_pages(self.s3, bucket, prefix, before_call=take_call):
                objects.extend(
                    (item["Key"], int(item["Size"])) for item in page.get("Contents", [])
                )
        except lake.ListingStopped:
            return None
        return objects

    def _counted(self, bucket: str, key: str, size: int) -> bool:
        known = self._object_lines.get((bucket, key))
        return known is not None and known[0] == size

    def _count_object(self, bucket: str, key: str, size: int, allowance: CountAllowance) -> bool:
        """Count one object's lines within ``allowance``; False when the allowance ran out
        before the object's end (nothing is remembered then, except for an object that alone
        decompresses to more than a request may: that one is remembered as uncountable)."""
        if lake.is_gzip(key) and allowance.inflated <= 0:
            allowance.cut = allowance.cut or "no decompressed bytes left"
            return False
        if not allowance.take_call():
            return False
        whole_room = allowance.inflated == allowance.max_inflated
        inflater = Inflater(key, allowance.inflated) if lake.is_gzip(key) else None
        lines, why = 0, None
        last = b"\n"
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            while chunk := body.read(lake.PIECE_BYTES):
                allowance.bytes -= len(chunk)
                S3_BYTES_READ.labels("count").inc(len(chunk))
                for piece in inflater.feed(chunk) if inflater is not None else (chunk,):
                    lines += piece.count(b"\n")
                    last = piece[-1:]
                if inflater is not None and inflater.capped:
                    break
            if inflater is not None:
                inflater.finish()
        except Unprocessable as exc:
            why = exc.message
        finally:
            body.close()
            if inflater is not None:
                allowance.inflated -= inflater.inflated
                S3_BYTES_INFLATED.labels("count").inc(inflater.inflated)
        if inflater is not None and inflater.capped:
            allowance.cut = (
                f"{allowance.max_inflated} decompressed bytes read "
                f"(DASHBOARD_MAX_DECOMPRESSED_BYTES), stopped in {key!r}"
            )
            if not whole_room:
                # Maybe a bomb, maybe only late in the request: tried first next time.
                suspects = self._suspects.setdefault(bucket, {})
                if len(suspects) < MAX_SUSPECTS:
                    suspects[key] = size
                return False
            why = (
                f"object {key!r} decompresses to more than {allowance.max_inflated} bytes "
                "(DASHBOARD_MAX_DECOMPRESSED_BYTES)"
            )
        if len(self._object_lines) >= MAX_COUNTED_OBJECTS:
            # Bounded memory: forget everything and count again on demand.
            self._object_lines.clear()
        counted = None if why else lines + (last != b"\n")
        self._object_lines[(bucket, key)] = (size, counted, why)
        return True


def _count_list_call() -> bool:
    S3_LIST_CALLS.inc()
    return True


def over_budget(cost: int) -> str:
    return (
        f"counting would read {cost} bytes, more than this request may "
        "(DASHBOARD_COUNT_BUDGET_BYTES)"
    )

"""Partition analysis: a bucket's objects grouped service -> day -> hour, with a warning where
an hour is made of many small files (slow to query, costly to list)."""

from __future__ import annotations

from typing import Any

from stages.dashboard.buckets import BucketScan, CountAllowance, LakeReader, hour_prefix

# An hour partition with fewer objects than this is not worth a warning however small they are.
SMALL_FILE_MIN_OBJECTS = 4


def analyse(
    reader: LakeReader,
    scan: BucketScan,
    *,
    service: str | None,
    small_file_bytes: int,
    count_budget: int,
    max_s3_calls: int,
    max_inflated: int,
) -> dict[str, Any]:
    """The partition tree of ``scan``; records are counted, newest hours first, while the
    bytes read, the S3 calls made and the bytes decompressed fit in what one request may spend.
    Counting goes on where the last request stopped, so a few refreshes fill in a large lake."""
    allowance = CountAllowance(bytes=count_budget, s3_calls=max_s3_calls, inflated=max_inflated)
    slots = sorted(
        (slot for slot in scan.partitions if service is None or slot[0] == service),
        key=lambda slot: (slot[1], slot[2]),
        reverse=True,
    )
    tree: dict[str, dict[str, list[dict[str, Any]]]] = {}
    warnings = 0
    uncounted = 0
    with reader.counting[scan.bucket]:
        if count_budget > 0:
            reader.settle_suspects(scan.bucket, allowance)
        for svc, day, hour in slots:
            stats = scan.partitions[(svc, day, hour)]
            prefix = hour_prefix(svc, day, hour)
            if count_budget > 0:
                records, why = reader.partition_records(scan.bucket, prefix, stats, allowance)
            else:
                records, why = None, "counting is off (DASHBOARD_COUNT_BUDGET_BYTES=0)"
            uncounted += records is None
            small = _small_files(stats.objects, stats.bytes, small_file_bytes)
            warnings += small
            tree.setdefault(svc, {}).setdefault(day, []).append(
                {
                    "hour": hour,
                    "prefix": prefix,
                    "objects": stats.objects,
                    "bytes": stats.bytes,
                    "records": records,
                    "uncounted": why,
                    "avg_object_bytes": stats.bytes // stats.objects if stats.objects else 0,
                    "small_files": small,
                }
            )
    return {
        "bucket": scan.bucket,
        "listed_at": scan.listed_at,
        "objects": scan.objects,
        "bytes": scan.bytes,
        "other_objects": scan.other_objects,
        "truncated": scan.partitions_truncated,
        "small_file_bytes": small_file_bytes,
        "small_file_partitions": warnings,
        "uncounted_partitions": uncounted,
        "cut_short": allowance.cut is not None,
        "cut_reason": allowance.cut,
        "s3_calls": allowance.calls_made,
        "count_bytes_read": count_budget - allowance.bytes if count_budget > 0 else 0,
        "services": [_service_entry(svc, days) for svc, days in sorted(tree.items())],
    }


def _small_files(objects: int, size: int, small_file_bytes: int) -> bool:
    return objects >= SMALL_FILE_MIN_OBJECTS and size / objects < small_file_bytes


def _service_entry(service: str, days: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    day_entries = [_day_entry(day, hours) for day, hours in sorted(days.items(), reverse=True)]
    return {
        "service": service,
        "objects": sum(d["objects"] for d in day_entries),
        "bytes": sum(d["bytes"] for d in day_entries),
        "records": _sum_known(d["records"] for d in day_entries),
        "days": day_entries,
    }


def _day_entry(day: str, hours: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "day": day,
        "objects": sum(h["objects"] for h in hours),
        "bytes": sum(h["bytes"] for h in hours),
        "records": _sum_known(h["records"] for h in hours),
        "hours": sorted(hours, key=lambda h: h["hour"]),
    }


def _sum_known(values: Any) -> int | None:
    """A total only when every part is known: a partial sum would look exact."""
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total

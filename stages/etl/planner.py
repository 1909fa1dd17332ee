"""Which raw objects exist, and which of them are not folded into the tables yet.

The raw zone is the consumer's buckets (``stages.common.lake``): record objects under
``service=<svc>/year=/month=/day=/hour=/``. Keys that start with ``_`` (dead letters) are not data
and are never listed. A fold lists, under every service, the hours within ``NEAR_SECONDS`` of
now (where live data lands); every ``ETL_LOOKBACK_LISTING_SECONDS`` also the
``ETL_LOOKBACK_HOURS`` before the current one and the next; every ``ETL_FULL_LISTING_SECONDS``
whole buckets, which finds objects that arrive late for older hours. Each listing is one call
per (bucket, service, hour) prefix, made ``LIST_THREADS`` at a time: the calls are round trips,
and a fold waits for all of them before it reads anything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from stages.common import lake, resources
from stages.common.config import Settings
from stages.etl import metrics
from stages.etl.typing import RawPartition

log = logging.getLogger(__name__)

LIST_THREADS = 8
# Objects of records generated now land in the current hour, and in the previous (next) one
# for a while after (before) the hour turns: the consumer flushes within seconds.
NEAR_SECONDS = 300


@dataclass(frozen=True)
class RawObject:
    bucket: str
    kind: str  # the kind of records the bucket holds: its own table
    key: str
    size: int
    modified: datetime
    partition: RawPartition


def _raw_object(bucket: str, kind: str, entry: dict[str, Any]) -> RawObject | None:
    key = entry["Key"]
    if lake.is_hidden(key):
        return None
    where = lake.parse_service_hour(key)
    if where is None:
        return None
    try:
        day = date(int(where.year), int(where.month), int(where.day))
    except ValueError:
        return None
    partition = RawPartition(where.service, day, int(where.hour))
    return RawObject(bucket, kind, key, int(entry["Size"]), entry["LastModified"], partition)


def services(s3: Any, bucket: str) -> list[str]:
    """The ``service=<svc>/`` prefixes of a bucket, as listed with a delimiter."""
    found = []
    for page in lake.list_pages(s3, bucket, "service=", Delimiter="/"):
        found.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return found


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every UTC hour from ``start``'s to ``end``'s, both included."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour <= end:
        yield hour
        hour += timedelta(hours=1)


def list_hours(s3: Any, settings: Settings, hour_list: Iterable[datetime]) -> list[RawObject]:
    """The record objects of the given UTC hours, under every service of every raw bucket."""
    chosen = list(hour_list)
    specs = list(resources.streams(settings))
    with ThreadPoolExecutor(LIST_THREADS, thread_name_prefix="etl-list") as pool:
        prefixes = list(pool.map(lambda spec: services(s3, spec.bucket), specs))
        jobs = [
            (spec, f"{service_prefix}{lake.hour_of(hour)}/")
            for spec, service_prefixes in zip(specs, prefixes, strict=True)
            for service_prefix in service_prefixes
            for hour in chosen
        ]
        listed = pool.map(lambda job: list(lake.list_objects(s3, job[0].bucket, job[1])), jobs)
        found = []
        for (spec, _), entries in zip(jobs, listed, strict=True):
            for entry in entries:
                obj = _raw_object(spec.bucket, spec.kind, entry)
                if obj is not None:
                    found.append(obj)
    return found


def list_all(s3: Any, settings: Settings) -> list[RawObject]:
    """Every record object of every raw bucket.

    An object under ``service=<svc>/`` that is in no hour partition (another writer's key, an
    impossible date) is not data and is not folded; it is not dropped silently either: the
    listing sets ``etl_raw_objects_outside_layout`` and logs a warning naming one of them."""
    found = []
    outside: list[str] = []
    for spec in resources.streams(settings):
        for entry in lake.list_objects(s3, spec.bucket, "service="):
            obj = _raw_object(spec.bucket, spec.kind, entry)
            if obj is not None:
                found.append(obj)
            elif not lake.is_hidden(entry["Key"]):
                outside.append(f"s3://{spec.bucket}/{entry['Key']}")
    metrics.OUTSIDE_LAYOUT.set(len(outside))
    if outside:
        log.warning(
            "%d raw objects are in no service/hour partition and are not folded, e.g. %s",
            len(outside),
            outside[0],
        )
    return found


def list_recent(s3: Any, settings: Settings, now: datetime) -> list[RawObject]:
    """The current hour (and the next, for clocks a little ahead) and the lookback hours."""
    start = now - timedelta(hours=settings.etl_lookback_hours)
    return list_hours(s3, settings, hours(start, now + timedelta(hours=1)))


def list_near(s3: Any, settings: Settings, now: datetime) -> list[RawObject]:
    """The hours within ``NEAR_SECONDS`` of ``now``: the current one, and near the turn of an
    hour the previous or the next."""
    near = timedelta(seconds=NEAR_SECONDS)
    return list_hours(s3, settings, hours(now - near, now + near))


def take(objects: Iterable[RawObject], max_bytes: int) -> list[RawObject]:
    """Objects in key order up to ``max_bytes`` in all (at least one)."""
    chosen: list[RawObject] = []
    total = 0
    for obj in sorted(objects, key=lambda o: (o.bucket, o.key)):
        if chosen and total + obj.size > max_bytes:
            break
        chosen.append(obj)
        total += obj.size
    return chosen

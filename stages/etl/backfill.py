"""Backfill and replay: rebuild the tables for a range of hours from the raw zone.

For every UTC hour of the range, every record object of that hour (all services, all three raw
buckets) is read and typed again, and each table's partitions (service, dt, hr) of that hour
are replaced by the result with a partition overwrite, one commit per table per hour. Running it
twice gives the same tables: each partition is a function of the raw objects of its hour. A
service with rows in the tables for an hour but no raw object of that hour left in any raw bucket
keeps its rows (reported as kept): an empty raw zone is never taken for an empty hour.

A backfill is a writer like the service: it takes the writer lease first (waiting at most one
lease period), so it never races a running ETL; stop the service or let it lose the lease.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, EqualTo, In

from stages.common.config import Settings
from stages.etl import planner
from stages.etl.committer import Committer, combine
from stages.etl.fold import read_object, type_object
from stages.etl.tables import TABLE_NAMES
from stages.etl.typing import KINDS

log = logging.getLogger(__name__)


class BackfillStopped(RuntimeError):
    """The backfill stopped before its last hour; the hours before were rebuilt."""


@dataclass
class HourReport:
    hour: datetime
    objects: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    outside: int = 0  # typed rows whose own hour is not this one (left to the regular fold)
    # (table, service, dt, hr) partitions rewritten, for the features table to follow.
    touched: set[tuple[str, str, date, int]] = field(default_factory=set)
    # (table, service) partitions of the hour left as they are: the tables hold rows of the
    # service in this hour, the raw zone has no object of it any more.
    kept: set[tuple[str, str]] = field(default_factory=set)


def parse_hour(text: str) -> datetime:
    """``2026-12-01T06`` (or with minutes, ``…T06:00``, or a full timestamp): that UTC hour."""
    value = text.strip()
    if len(value) == 13:
        value += ":00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hours_in(start: datetime, end: datetime) -> list[datetime]:
    """The hours from ``start`` up to, not including, ``end``."""
    return [h for h in planner.hours(start, end) if h < end]


def _in_hour(rows: pa.Table, hour: datetime) -> pa.Array:
    return pc.and_(
        pc.equal(rows["dt"], pa.scalar(hour.date(), pa.date32())),
        pc.equal(rows["hr"], pa.scalar(hour.hour, pa.int32())),
    )


def backfill_hour(settings: Settings, s3: Any, committer: Committer, hour: datetime) -> HourReport:
    report = HourReport(hour)
    objects = planner.list_hours(s3, settings, [hour])
    report.objects = len(objects)
    # A service of this hour with no raw object left (expired by a lifecycle rule, another
    # BUCKET_PREFIX, deleted) has nothing to be rebuilt from: its curated rows are kept rather
    # than replaced by nothing.
    raw_services = {obj.partition.service for obj in objects}
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    for obj in objects:
        typed = type_object(obj, read_object(s3, obj))
        for kind, table in typed.tables.items():
            parts[kind].append(table)
        if typed.quarantine.num_rows:
            parts["quarantine"].append(typed.quarantine)
    for kind in (*KINDS, "quarantine"):
        table = committer.reload(kind)
        existing = {
            s
            for s, d, h in (
                (p["service"], p["dt"], p["hr"])
                for p in (
                    table.inspect.files().column("partition").to_pylist()
                    if table.current_snapshot()
                    else []
                )
            )
            if d == hour.date() and h == hour.hour
        }
        if parts[kind]:
            rows = combine(parts[kind])
            inside = _in_hour(rows, hour)
            kept = rows.filter(inside)
            report.outside += rows.num_rows - kept.num_rows
        else:
            kept = None
        without_raw = existing - raw_services
        report.kept |= {(TABLE_NAMES[kind], service) for service in without_raw}
        services = (existing - without_raw) | (
            set(pc.unique(kept["service"].cast(pa.string())).to_pylist())
            if kept is not None
            else set()
        )
        if not services:
            continue
        where = And(
            And(EqualTo("dt", hour.date().isoformat()), EqualTo("hr", hour.hour)),
            In("service", services),
        )
        if kept is None:
            schema = table.schema().as_arrow()
            kept = schema.empty_table()
        committer.overwrite(kind, kept, where, "backfill")
        report.rows[TABLE_NAMES[kind]] = kept.num_rows
        report.touched |= {(TABLE_NAMES[kind], s, hour.date(), hour.hour) for s in services}
    return report


def backfill(
    settings: Settings, s3: Any, committer: Committer, start: datetime, end: datetime
) -> list[HourReport]:
    reports = []
    for hour in hours_in(start, end):
        if not committer.lease.acquire():
            raise BackfillStopped(
                f"lost the writer lease before {hour.strftime('%Y-%m-%dT%H')} (another ETL took "
                f"it); {len(reports)} hours before it were rebuilt; stop the ETL service and "
                "run the backfill again"
            )
        report = backfill_hour(settings, s3, committer, hour)
        log.info(
            "backfilled %s: %d objects, rows %s, %d outside the hour",
            hour.strftime("%Y-%m-%dT%H"),
            report.objects,
            report.rows,
            report.outside,
        )
        reports.append(report)
    return reports


def wait_for_lease(committer: Committer, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if committer.lease.acquire():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)

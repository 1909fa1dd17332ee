"""Maintenance of the tables, run by the lease holder between folds.

- **Compaction**: a closed hour (its end plus ETL_ALLOWED_LATENESS_SECONDS in the past) whose
  partition holds more than one data file is rewritten as one file with a partition overwrite of
  the same rows, sorted by time. A late object for a compacted hour is folded like any other (a
  second file), and the hour is compacted again by a later pass.
- **Snapshot expiry**: the newest ETL_SNAPSHOTS_KEEP snapshots and every snapshot younger than
  ETL_SNAPSHOT_MAX_AGE_SECONDS are kept, the others expired. What an object was folded into is
  in the rows (``source_key``), so expiry loses no bookkeeping.
- **Orphan removal**: files under a table's location that neither the current metadata, its
  metadata log, nor any kept snapshot (manifest lists, manifests, data files) references, and
  that are older than ETL_ORPHAN_AGE_SECONDS, are deleted: data files of a commit that never
  happened (a crash after the data files were written), files of expired snapshots, old metadata.
  A commit in flight is this process's own (one writer, and maintenance never runs during a
  fold), and its files are younger than the safety age anyway.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In
from pyiceberg.table import Table

from stages.common import lake
from stages.common.config import Settings
from stages.etl import metrics
from stages.etl.committer import Committer
from stages.etl.tables import TABLE_NAMES

log = logging.getLogger(__name__)


def partition_filter(service: str, dt: date, hr: int) -> BooleanExpression:
    return And(EqualTo("service", service), EqualTo("dt", dt.isoformat()), EqualTo("hr", hr))


def hour_closed(dt: date, hr: int, now: datetime, lateness_seconds: float) -> bool:
    end = datetime(dt.year, dt.month, dt.day, hr, tzinfo=UTC) + timedelta(hours=1)
    return end + timedelta(seconds=lateness_seconds) <= now


def files_per_partition(table: Table) -> dict[tuple[str, date, int], int]:
    if table.current_snapshot() is None:
        return {}
    files = table.inspect.files()
    counts: dict[tuple[str, date, int], int] = defaultdict(int)
    for part in files.column("partition").to_pylist():
        counts[(part["service"], part["dt"], part["hr"])] += 1
    return counts


class Maintenance:
    def __init__(self, settings: Settings, committer: Committer, s3: Any) -> None:
        self.settings = settings
        self.committer = committer
        self.s3 = s3

    def __call__(self, now: datetime) -> None:
        for step in (self.compact, self.expire_snapshots, self.remove_orphans):
            for kind in TABLE_NAMES:
                try:
                    step(kind, now)
                except Exception as exc:
                    metrics.MAINTENANCE_ERRORS.labels(step.__name__).inc()
                    log.warning("%s of %s failed: %s", step.__name__, TABLE_NAMES[kind], exc)

    def compact(self, kind: str, now: datetime) -> int:
        """Rewrite the closed hour partitions of more than one file as one file each: one
        overwrite per hour, of every such service partition of that hour."""
        table = self.committer.reload(kind)
        lateness = self.settings.etl_allowed_lateness_seconds
        by_hour: dict[tuple[date, int], list[str]] = defaultdict(list)
        for (service, dt, hr), count in sorted(files_per_partition(table).items()):
            if count > 1 and hour_closed(dt, hr, now, lateness):
                by_hour[(dt, hr)].append(service)
        done = 0
        for (dt, hr), services in sorted(by_hour.items()):
            where = And(
                And(EqualTo("dt", dt.isoformat()), EqualTo("hr", hr)), In("service", services)
            )
            table = self.committer.reload(kind)
            rows = sorted_rows(table.scan(row_filter=where).to_arrow())
            self.committer.overwrite(kind, rows, where, "compaction")
            metrics.COMPACTIONS.labels(TABLE_NAMES[kind]).inc(len(services))
            log.info(
                "compacted %s %s hour %02d: %d partitions, %d rows, one file each",
                TABLE_NAMES[kind],
                dt,
                hr,
                len(services),
                rows.num_rows,
            )
            done += len(services)
        return done

    def expire_snapshots(self, kind: str, now: datetime) -> int:
        table = self.committer.reload(kind)
        snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
        # The pass's own compactions are newer than ``now``: age counts from the present.
        reference = max(now.timestamp(), time.time())
        horizon = (reference - self.settings.etl_snapshot_max_age_seconds) * 1000
        current = table.current_snapshot()
        expired = [
            s.snapshot_id
            for s in snapshots[self.settings.etl_snapshots_keep :]
            if s.timestamp_ms < horizon
            and (current is None or s.snapshot_id != current.snapshot_id)
        ]
        if not expired:
            return 0
        self.committer.check_writer(table)
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        metrics.SNAPSHOTS_EXPIRED.labels(TABLE_NAMES[kind]).inc(len(expired))
        self.committer.reload(kind)
        return len(expired)

    def referenced(self, table: Table) -> set[str]:
        metadata = table.metadata
        paths = {table.metadata_location}
        paths.update(entry.metadata_file for entry in metadata.metadata_log)
        for snapshot in metadata.snapshots:
            paths.add(snapshot.manifest_list)
        if metadata.snapshots:
            manifests = table.inspect.all_manifests()
            paths.update(manifests.column("path").to_pylist())
            files = table.inspect.all_files()
            paths.update(files.column("file_path").to_pylist())
        return {_normal(p) for p in paths if p}

    def remove_orphans(self, kind: str, now: datetime) -> int:
        table = self.committer.reload(kind)
        keep = self.referenced(table)
        location = urlparse(table.location())
        bucket, prefix = location.netloc, location.path.lstrip("/").rstrip("/") + "/"
        horizon = now - timedelta(seconds=self.settings.etl_orphan_age_seconds)
        doomed = [
            entry["Key"]
            for entry in lake.list_objects(self.s3, bucket, prefix)
            if entry["LastModified"] < horizon and f"s3://{bucket}/{entry['Key']}" not in keep
        ]
        if not doomed:
            return 0
        # Look again right before deleting: a commit since the first look may reference more.
        self.committer.check_writer(table)
        keep = self.referenced(self.committer.reload(kind))
        doomed = [key for key in doomed if f"s3://{bucket}/{key}" not in keep]
        for start in range(0, len(doomed), 1000):
            chunk = doomed[start : start + 1000]
            self.s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
        metrics.ORPHANS_REMOVED.labels(TABLE_NAMES[kind]).inc(len(doomed))
        log.info("removed %d orphan files of %s", len(doomed), TABLE_NAMES[kind])
        return len(doomed)


def _normal(path: str) -> str:
    parsed = urlparse(path)
    scheme = "s3" if parsed.scheme in {"s3", "s3a", "s3n"} else parsed.scheme
    return f"{scheme}://{parsed.netloc}{parsed.path}"


def sorted_rows(rows: pa.Table) -> pa.Table:
    return rows.sort_by("timestamp") if "timestamp" in rows.column_names else rows

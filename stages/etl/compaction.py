"""Maintenance of the tables, run by the lease holder between folds.

- **Compaction**: each partition of a closed hour (its end plus ETL_ALLOWED_LATENESS_SECONDS in
  the past) that is not one compaction file is rewritten as one file of the same rows, in the
  table's write order and the tables' Parquet layout (``stages.etl.tables.write_data_file``:
  per-column encodings, dictionaries and zstd levels), by a snapshot that replaces exactly the
  files it read. A late object for a compacted hour is folded like any other (a second file),
  and the hour is compacted again by a later pass.
- **Snapshot expiry**: the newest ETL_SNAPSHOTS_KEEP snapshots and every snapshot younger than
  ETL_SNAPSHOT_MAX_AGE_SECONDS are kept, the others expired. What an object was folded into is
  in the rows (``source_key``), so expiry loses no bookkeeping.
- **Orphan removal**: files under a table's location that neither the current metadata, its
  metadata log, nor any kept snapshot (manifest lists, manifests, data files) references, and
  that are older than ETL_ORPHAN_AGE_SECONDS, are deleted: data files of a commit that never
  happened (a crash after the data files were written), files of expired snapshots, old metadata.
  A commit in flight is this process's own (one writer, and maintenance never runs during a
  fold), and its files are younger than the safety age anyway.

Snapshot expiry and orphan removal also keep ``telemetry.features`` (the features thread commits
about every ``ETL_INTERVAL_SECONDS``), with the same settings; it is not compacted (the features
step writes a closed hour as one file itself). Expiry only drops snapshots other than the
current one, so every data file the current snapshot's manifests reference (what detection reads,
by sequence number) stays. The features thread commits while maintenance runs (on the fold
thread): a commit that lands between an expiry's load and its catalog update makes the catalog
refuse the expiry, which is redone here from a fresh load; the other way round, pyiceberg's
transaction redoes the refused features commit on the new metadata (snapshot producers only).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, EqualTo
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from stages.common import lake
from stages.common.config import Settings
from stages.common.lakehouse import FEATURES_TABLE
from stages.etl import metrics
from stages.etl.committer import MAX_ATTEMPTS, Committer
from stages.etl.tables import COMPACTED_PREFIX, TABLE_NAMES, in_write_order, write_data_file

log = logging.getLogger(__name__)

# The features table's key among the maintained tables (the curated ones are TABLE_NAMES).
FEATURES = "features"
# Every table snapshot expiry and orphan removal keep: kind -> table name (metrics' label).
MAINTAINED: dict[str, str] = {**TABLE_NAMES, FEATURES: FEATURES_TABLE.rpartition(".")[2]}


def partition_filter(service: str, dt: date, hr: int) -> BooleanExpression:
    return And(EqualTo("service", service), EqualTo("dt", dt.isoformat()), EqualTo("hr", hr))


def hour_closed(dt: date, hr: int, now: datetime, lateness_seconds: float) -> bool:
    end = datetime(dt.year, dt.month, dt.day, hr, tzinfo=UTC) + timedelta(hours=1)
    return end + timedelta(seconds=lateness_seconds) <= now


def files_per_partition(table: Table) -> dict[tuple[str, date, int], list[str]]:
    """The data files (paths) of each (service, dt, hr) partition in the current snapshot."""
    if table.current_snapshot() is None:
        return {}
    files = table.inspect.files()
    paths: dict[tuple[str, date, int], list[str]] = defaultdict(list)
    for part, path in zip(
        files.column("partition").to_pylist(), files.column("file_path").to_pylist(), strict=True
    ):
        paths[(part["service"], part["dt"], part["hr"])].append(path)
    return paths


def compacted(paths: list[str]) -> bool:
    """One file, written by compaction (in the tables' Parquet layout)."""
    return len(paths) == 1 and paths[0].rpartition("/")[2].startswith(COMPACTED_PREFIX)


class Maintenance:
    def __init__(self, settings: Settings, committer: Committer, s3: Any) -> None:
        self.settings = settings
        self.committer = committer
        self.s3 = s3

    def __call__(self, now: datetime) -> None:
        steps = (
            (self.compact, TABLE_NAMES),
            (self.expire_snapshots, MAINTAINED),
            (self.remove_orphans, MAINTAINED),
        )
        for step, kinds in steps:
            for kind in kinds:
                try:
                    step(kind, now)
                except Exception as exc:
                    metrics.MAINTENANCE_ERRORS.labels(step.__name__).inc()
                    log.warning("%s of %s failed: %s", step.__name__, MAINTAINED[kind], exc)

    def load(self, kind: str) -> Table | None:
        """``kind``'s table as the catalog has it now; None for a features table not created
        yet (the features step creates it)."""
        if kind != FEATURES:
            return self.committer.reload(kind)
        try:
            return self.committer.catalog.load_table(FEATURES_TABLE)
        except NoSuchTableError:
            return None

    def compact(self, kind: str, now: datetime) -> int:
        """Rewrite each closed hour partition that is not one compaction file as one file: one
        commit per hour, replacing exactly the files it read of every such service partition."""
        table = self.committer.reload(kind)
        lateness = self.settings.etl_allowed_lateness_seconds
        by_hour: dict[tuple[date, int], list[str]] = defaultdict(list)
        for (service, dt, hr), paths in sorted(files_per_partition(table).items()):
            if not compacted(paths) and hour_closed(dt, hr, now, lateness):
                by_hour[(dt, hr)].append(service)
        done = 0
        for (dt, hr), services in sorted(by_hour.items()):
            self.compact_hour(kind, dt, hr, services)
            done += len(services)
        return done

    def compact_hour(self, kind: str, dt: date, hr: int, services: list[str]) -> None:
        """One file per (service, ``dt``, ``hr``) partition of ``services``, written with the
        tables' Parquet layout (``stages.etl.tables.write_data_file``), rows in the table's write
        order; committed as one snapshot that deletes the files read and adds the new ones.

        A refused commit (the table moved since it was loaded) is redone from a fresh load, so a
        commit never replaces files other than the ones whose rows it wrote; the files of the
        refused attempt are orphans for orphan removal.
        """
        name = TABLE_NAMES[kind]
        for _ in range(MAX_ATTEMPTS):
            table = self.committer.reload(kind)
            replaced: list[DataFile] = []
            written: list[DataFile] = []
            rows = 0
            for service in services:
                scan = table.scan(row_filter=partition_filter(service, dt, hr))
                tasks = list(scan.plan_files())
                if not tasks:
                    continue
                data = in_write_order(kind, scan.to_arrow())
                expected = sum(task.file.record_count for task in tasks)
                if not any(task.delete_files for task in tasks) and data.num_rows != expected:
                    raise RuntimeError(
                        f"{name} {service} {dt} hour {hr}: read {data.num_rows} rows of "
                        f"{expected}; not compacting"
                    )
                written.append(write_data_file(table, data, (service, dt, hr)))
                replaced.extend(task.file for task in tasks)
                rows += data.num_rows
            if not replaced:
                return
            self.committer.check_writer(table)
            tx = table.transaction()
            properties = self.committer.snapshot_properties(**{"etl.operation": "compaction"})
            with tx.update_snapshot(snapshot_properties=properties).overwrite() as rewrite:
                for data_file in replaced:
                    rewrite.delete_data_file(data_file)
                for data_file in written:
                    rewrite.append_data_file(data_file)
            try:
                tx.commit_transaction()
            except CommitFailedException as exc:
                metrics.COMMIT_CONFLICTS.labels(name).inc()
                log.warning("%s: compaction refused (%s); redoing it from a fresh load", name, exc)
                continue
            metrics.COMMITS.labels(name, "compaction").inc()
            metrics.COMPACTIONS.labels(name).inc(len(written))
            self.committer.tables[kind] = table
            log.info(
                "compacted %s %s hour %02d: %d partitions, %d files into %d, %d rows",
                name,
                dt,
                hr,
                len(written),
                len(replaced),
                len(written),
                rows,
            )
            return
        raise CommitFailedException(f"{name}: {MAX_ATTEMPTS} compactions refused in a row")

    def expire_snapshots(self, kind: str, now: datetime) -> int:
        """Expire the snapshots beyond the newest ETL_SNAPSHOTS_KEEP that are older than
        ETL_SNAPSHOT_MAX_AGE_SECONDS, never the current one. A refused expiry (a commit landed
        since the load, e.g. the features thread's) is redone from a fresh load."""
        for _ in range(MAX_ATTEMPTS):
            table = self.load(kind)
            if table is None:
                return 0
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
            try:
                table.maintenance.expire_snapshots().by_ids(expired).commit()
            except CommitFailedException as exc:
                metrics.COMMIT_CONFLICTS.labels(MAINTAINED[kind]).inc()
                log.warning("%s: expiry refused (%s); redoing it", MAINTAINED[kind], exc)
                continue
            metrics.SNAPSHOTS_EXPIRED.labels(MAINTAINED[kind]).inc(len(expired))
            self.load(kind)
            return len(expired)
        raise CommitFailedException(f"{MAINTAINED[kind]}: {MAX_ATTEMPTS} expiries refused in a row")

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
        table = self.load(kind)
        if table is None:
            return 0
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
        again = self.load(kind)
        if again is None:
            return 0
        keep = self.referenced(again)
        doomed = [key for key in doomed if f"s3://{bucket}/{key}" not in keep]
        for start in range(0, len(doomed), 1000):
            chunk = doomed[start : start + 1000]
            self.s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
        metrics.ORPHANS_REMOVED.labels(MAINTAINED[kind]).inc(len(doomed))
        log.info("removed %d orphan files of %s", len(doomed), MAINTAINED[kind])
        return len(doomed)


def _normal(path: str) -> str:
    parsed = urlparse(path)
    scheme = "s3" if parsed.scheme in {"s3", "s3a", "s3n"} else parsed.scheme
    return f"{scheme}://{parsed.netloc}{parsed.path}"

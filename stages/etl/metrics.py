"""The ETL service's Prometheus metrics (served on its /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OBJECTS_FOLDED = Counter(
    "etl_objects_folded_total", "Raw objects folded into the tables", ["bucket"]
)
RAW_BYTES = Counter("etl_raw_bytes_read_total", "Bytes of raw objects read", ["bucket"])
RECORDS_IN = Counter(
    "etl_records_in_total", "Non-blank raw lines read from folded objects", ["kind"]
)
RECORDS_WRITTEN = Counter(
    "etl_records_written_total", "Rows committed to a table by a fold", ["table"]
)
QUARANTINED = Counter(
    "etl_quarantined_total", "Raw lines committed to the quarantine table, with their reason"
)
UNREADABLE = Counter(
    "etl_raw_objects_unreadable_total",
    "Raw objects whose body could not be read as lines (not gzip, a truncated stream, over "
    "the size cap), each committed to the quarantine table as one row with the reason",
    ["bucket"],
)
ALREADY_FOLDED = Counter(
    "etl_rows_already_folded_total",
    "Typed rows not written because their object's rows were already in the table "
    "(a fold after a crash or a takeover)",
    ["table"],
)
COMMITS = Counter("etl_commits_total", "Iceberg snapshots committed", ["table", "operation"])
COMMIT_CONFLICTS = Counter(
    "etl_commit_conflicts_total",
    "Commits refused because the table changed since it was loaded (retried from a fresh load)",
    ["table"],
)
COMPACTIONS = Counter(
    "etl_compactions_total", "Closed hour partitions rewritten into one file", ["table"]
)
SNAPSHOTS_EXPIRED = Counter("etl_snapshots_expired_total", "Snapshots expired", ["table"])
ORPHANS_REMOVED = Counter(
    "etl_orphan_files_removed_total",
    "Unreferenced files deleted from a table's location",
    ["table"],
)
FOLD_ERRORS = Counter(
    "etl_fold_errors_total", "Folds that failed (retried on the next interval)", ["error"]
)
MAINTENANCE_ERRORS = Counter(
    "etl_maintenance_errors_total", "Maintenance steps that failed (retried later)", ["step"]
)
LEASE_TAKEN = Counter("etl_lease_taken_total", "Times this process took the writer lease")
LEASE_LOST = Counter("etl_lease_lost_total", "Times this process lost the writer lease")

BACKLOG_OBJECTS = Gauge("etl_backlog_objects", "Listed raw objects not folded yet")
BACKLOG_BYTES = Gauge("etl_backlog_bytes", "Bytes of listed raw objects not folded yet")
LAG_SECONDS = Gauge(
    "etl_lag_seconds", "Age of the oldest listed raw object not folded yet (0: none)"
)
LAST_COMMIT = Gauge("etl_last_commit_timestamp_seconds", "Unix time of the last fold's commit")
LEASE_HELD = Gauge("etl_lease_held", "1 while this process holds the writer lease")
OUTSIDE_LAYOUT = Gauge(
    "etl_raw_objects_outside_layout",
    "Objects under service=<svc>/ in the raw buckets that are in no hour partition (never "
    "folded), as the last full listing found them",
)
SOURCE_KEY_CHECKPOINTS = Counter(
    "etl_source_key_checkpoints_total",
    "Checkpoints of the tables' source keys per data file written",
)
SOURCE_KEY_FILES_READ = Counter(
    "etl_source_key_files_read_total",
    "Data files whose source keys were read because no checkpoint listed them",
)
SOURCE_KEY_CHECKPOINT_ERRORS = Counter(
    "etl_source_key_checkpoint_errors_total",
    "Checkpoints of the source keys not written (retried at the next fold)",
)

"""``telemetry.features``: per-service signals in fixed time buckets, computed from the curated
tables (``telemetry.logs``, ``telemetry.metrics``, ``telemetry.apm``), never from the raw zone.

Invariants:

- A (service, dt, hr) partition of the features table is a pure function of the curated rows of
  that service and hour and of ``FEATURES_BUCKET_SECONDS``: :func:`compute_features` reads only the
  columns in :data:`INPUT_COLUMNS` (no ground-truth label, no ``anomaly_score``), sums in a fixed
  order and sorts its output, so a re-run gives the same rows, whatever the file layout.
- A bucket ``[start, start + width)`` is written once its watermark ``start + width +
  FEATURES_ALLOWED_LATENESS_SECONDS`` has passed. The builder computes it from the curated rows
  it holds in memory: the rows of the data files each fold committed, handed over by the fold
  (:meth:`FeatureBuilder.prime`), never read back. A call appends the buckets that closed since
  the last one (one fast append for every partition of the call); a partition whose hour is
  closed is then merged into one file.
- Records that reach the curated tables after their bucket was written are *late*: their
  buckets are computed again from the rows kept for them plus the late rows, and the
  partition's files are replaced by one file of its rows (one overwrite snapshot that deletes
  exactly those files), so the table stays a function of the curated rows. They are counted
  (``etl_features_late_records_total`` and :meth:`FeatureBuilder.status`).
- A partition whose every curated row the builder has not seen (a start, a commit it was not
  handed the rows of, a late record once the kept rows were dropped to stay within
  FEATURES_MEMORY_BYTES) is rebuilt from the curated tables and replaced whole, as a backfill
  does. Every features commit records up to when the curated commits are reflected
  (``features.curated-through``) and which buckets were still open (``features.closed-before``):
  a starting builder rebuilds exactly the partitions those marks say may be missing (every
  partition when they are absent), so a crash between a curated commit and the features commit
  is caught up, and no bucket is written twice.
- A failed call counts nothing as done and makes the builder start over from what the tables
  hold (a refused commit means another writer moved the table); the failure is counted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In
from pyiceberg.io.pyarrow import ArrowScan, _get_parquet_writer_kwargs, schema_to_pyarrow
from pyiceberg.manifest import DataFile
from pyiceberg.schema import Schema
from pyiceberg.table import DataScan, FileScanTask, Table
from pyiceberg.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from stages.common.config import Settings
from stages.common.counters import OutcomeCounters
from stages.common.lakehouse import FEATURES_LOCATION, FEATURES_TABLE
from stages.etl.tables import (
    NAMESPACE,
    PROCESSED_BUCKET,
    TABLE_NAMES,
    partition_spec,
    write_data_file,
)
from stages.etl.tables import schema as curated_schema

log = logging.getLogger(__name__)


SIGNALS = ("metric", "apm", "log")
# The name of a row that aggregates a whole service (APM: every operation; logs: every record).
ALL = "*"
# Log levels that always get a row (zero when absent) in a bucket where the service logged.
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
ERROR_LEVELS = ("ERROR", "FATAL")
APM_ERROR_STATUS = "ERROR"
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))

# The only curated columns features are computed from: the ground-truth labels (is_anomaly,
# scenario_id, anomaly_type) and the generator's anomaly_score are not among them.
INPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "metric": ("service", "timestamp", "metric_name", "value"),
    "apm": ("service", "timestamp", "name", "duration_ms", "status"),
    "log": ("service", "timestamp", "level", "category"),
}

# (column, Iceberg type, Arrow type), in table order.
_COLUMNS: tuple[tuple[str, Any, pa.DataType], ...] = (
    ("service", StringType(), pa.string()),
    ("signal", StringType(), pa.string()),
    ("name", StringType(), pa.string()),
    ("bucket_start", TimestamptzType(), pa.timestamp("us", tz="UTC")),
    ("bucket_seconds", IntegerType(), pa.int32()),
    ("count", LongType(), pa.int64()),
    ("error_count", LongType(), pa.int64()),
    ("error_rate", DoubleType(), pa.float64()),
    ("mean", DoubleType(), pa.float64()),
    ("min", DoubleType(), pa.float64()),
    ("max", DoubleType(), pa.float64()),
    ("p50", DoubleType(), pa.float64()),
    ("p95", DoubleType(), pa.float64()),
    ("p99", DoubleType(), pa.float64()),
    ("dt", DateType(), pa.date32()),
    ("hr", IntegerType(), pa.int32()),
)
ARROW_SCHEMA = pa.schema([pa.field(name, typ) for name, _, typ in _COLUMNS])
SORT_KEYS = [
    ("service", "ascending"),
    ("signal", "ascending"),
    ("name", "ascending"),
    ("bucket_start", "ascending"),
]
_US = 1_000_000
_EPOCH = date(1970, 1, 1)


def schema() -> Schema:
    """The Iceberg schema of ``telemetry.features`` (every column optional, as in tables.py)."""
    return Schema(
        *(
            NestedField(field_id=i, name=name, field_type=typ, required=False)
            for i, (name, typ, _) in enumerate(_COLUMNS, start=1)
        )
    )


def ensure_features_table(catalog: Catalog) -> Table:
    """Create ``telemetry.features`` (in the features bucket) unless it exists, and return it."""
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(NAMESPACE, {"location": f"s3://{PROCESSED_BUCKET}/{NAMESPACE}"})
    table_schema = schema()
    try:
        return catalog.create_table(
            FEATURES_TABLE,
            schema=table_schema,
            location=FEATURES_LOCATION,
            partition_spec=partition_spec(table_schema),
            properties={"write.parquet.compression-codec": "zstd"},
        )
    except TableAlreadyExistsError:
        return catalog.load_table(FEATURES_TABLE)


# --- the pure computation -------------------------------------------------------------------


def _plain(table: pa.Table, kind: str, bucket_seconds: int) -> pa.Table:
    """The input columns of ``kind`` as plain strings/doubles, plus the bucket start."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in INPUT_COLUMNS[kind]:
        column = table.column(name)
        if name == "timestamp":
            column = column.cast(pa.timestamp("us", tz="UTC"))
        elif name in ("value", "duration_ms"):
            column = column.cast(pa.float64())
        else:
            column = column.cast(pa.string())
        columns[name] = column
    width = bucket_seconds * _US
    micros = columns.pop("timestamp").cast(pa.int64())
    # Integer floor: timestamps are after 1970 (typing refuses years before 2000).
    start = pc.multiply(pc.divide(micros, width), width)
    columns["bucket_start"] = start.cast(pa.timestamp("us", tz="UTC"))
    return pa.table(columns)


def _value_stats(
    table: pa.Table, keys: list[str], value: str, errors: str | None = None
) -> pa.Table:
    """count, mean, min, max and exact p50/p95/p99 of ``value`` per ``keys`` group.

    Rows are sorted by the keys and then the value, so each group is a run of ascending values:
    quantiles are read off by index (linear interpolation between the two closest ranks, the
    definition of numpy's default and DuckDB's ``quantile_cont``), and sums run in the same order
    whatever order the rows came in.
    """
    table = table.filter(pc.is_valid(table.column(value)))
    table = table.sort_by([(k, "ascending") for k in keys] + [(value, "ascending")])
    aggregations: list[tuple[str, str]] = [
        (value, "count"),
        (value, "sum"),
        (value, "min"),
        (value, "max"),
    ]
    if errors is not None:
        aggregations.append((errors, "sum"))
    groups = table.group_by(keys, use_threads=False).aggregate(aggregations)
    # Same order as the runs of ``table``: both sorted by the same keys.
    groups = groups.sort_by([(k, "ascending") for k in keys])
    counts = groups.column(f"{value}_count").cast(pa.int64())
    starts = pc.subtract(pc.cumulative_sum(counts), counts)
    values = table.column(value).combine_chunks()
    out: dict[str, Any] = {k: groups.column(k) for k in keys}
    out["count"] = counts
    out["mean"] = pc.divide(groups.column(f"{value}_sum"), counts.cast(pa.float64()))
    out["min"] = groups.column(f"{value}_min")
    out["max"] = groups.column(f"{value}_max")
    last = pc.subtract(counts, 1)
    for column, q in QUANTILES:
        position = pc.multiply(last.cast(pa.float64()), q)
        low = pc.floor(position).cast(pa.int64())
        high = pc.min_element_wise(pc.add(low, 1), last)
        fraction = pc.subtract(position, low.cast(pa.float64()))
        below = pc.take(values, pc.add(starts, low))
        above = pc.take(values, pc.add(starts, high))
        out[column] = pc.add(below, pc.multiply(pc.subtract(above, below), fraction))
    if errors is not None:
        error_count = groups.column(f"{errors}_sum").cast(pa.int64())
        out["error_count"] = error_count
        out["error_rate"] = pc.divide(error_count.cast(pa.float64()), counts.cast(pa.float64()))
    return pa.table(out)


def _counts(table: pa.Table, keys: list[str]) -> pa.Table:
    groups = table.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    return groups.rename_columns([*keys, "count"])


def _rows(table: pa.Table, signal: str, bucket_seconds: int) -> pa.Table:
    """``table`` (service, name, bucket_start and some value columns) in the features schema."""
    n = table.num_rows
    starts = table.column("bucket_start")
    arrays = []
    for f in ARROW_SCHEMA:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        elif f.name == "signal":
            arrays.append(pa.array([signal] * n, f.type))
        elif f.name == "bucket_seconds":
            arrays.append(pa.array([bucket_seconds] * n, f.type))
        elif f.name == "dt":
            arrays.append(starts.cast(pa.date32()))
        elif f.name == "hr":
            arrays.append(pc.hour(starts).cast(pa.int32()))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def _metric_rows(metrics: pa.Table, bucket_seconds: int) -> pa.Table:
    plain = _plain(metrics, "metric", bucket_seconds).rename_columns(
        ["service", "name", "value", "bucket_start"]
    )
    stats = _value_stats(plain, ["service", "name", "bucket_start"], "value")
    return _rows(stats, "metric", bucket_seconds)


def _apm_rows(apm: pa.Table, bucket_seconds: int) -> pa.Table:
    plain = _plain(apm, "apm", bucket_seconds)
    failed = pc.fill_null(pc.equal(plain.column("status"), APM_ERROR_STATUS), False)
    plain = plain.drop_columns(["status"]).append_column("failed", failed.cast(pa.int64()))
    per_operation = _value_stats(
        plain, ["service", "name", "bucket_start"], "duration_ms", errors="failed"
    )
    whole = _value_stats(
        plain.drop_columns(["name"]), ["service", "bucket_start"], "duration_ms", errors="failed"
    )
    whole = whole.append_column("name", pa.array([ALL] * whole.num_rows, pa.string()))
    return pa.concat_tables(
        [_rows(per_operation, "apm", bucket_seconds), _rows(whole, "apm", bucket_seconds)]
    )


def _log_rows(logs: pa.Table, bucket_seconds: int) -> pa.Table:
    plain = _plain(logs, "log", bucket_seconds)
    is_error = pc.fill_null(pc.is_in(plain.column("level"), pa.array(ERROR_LEVELS)), False)
    plain = plain.append_column("is_error", is_error.cast(pa.int64()))
    keys = ["service", "bucket_start"]
    whole = plain.group_by(keys, use_threads=False).aggregate(
        [([], "count_all"), ("is_error", "sum")]
    )
    whole = whole.rename_columns([*keys, "count", "error_count"])
    count = whole.column("count").cast(pa.float64())
    whole = whole.append_column(
        "error_rate", pc.divide(whole.column("error_count").cast(pa.float64()), count)
    ).append_column("name", pa.array([ALL] * whole.num_rows, pa.string()))

    # Every standard level gets a row in every bucket where the service logged (zero included),
    # so a series has no gaps while the service is alive; other level names count as seen.
    grid = whole.select(keys)
    grid = pa.table(
        {
            "service": pa.concat_arrays([grid.column("service").combine_chunks()] * len(LEVELS)),
            "bucket_start": pa.concat_arrays(
                [grid.column("bucket_start").combine_chunks()] * len(LEVELS)
            ),
            "level": pa.array([lv for lv in LEVELS for _ in range(grid.num_rows)], pa.string()),
        }
    )
    seen = _counts(plain.filter(pc.is_valid(plain.column("level"))), [*keys, "level"])
    levels = grid.join(seen, keys=[*keys, "level"], join_type="full outer")
    levels = levels.set_column(
        levels.schema.get_field_index("count"), "count", pc.fill_null(levels["count"], 0)
    )
    levels = levels.append_column(
        "name", pc.binary_join_element_wise("level.", levels["level"], "")
    )

    categories = _counts(plain.filter(pc.is_valid(plain.column("category"))), [*keys, "category"])
    categories = categories.append_column(
        "name", pc.binary_join_element_wise("category.", categories["category"], "")
    )
    return pa.concat_tables(
        [
            _rows(whole, "log", bucket_seconds),
            _rows(levels.drop_columns(["level"]), "log", bucket_seconds),
            _rows(categories.drop_columns(["category"]), "log", bucket_seconds),
        ]
    )


_BUILDERS = {"metric": _metric_rows, "apm": _apm_rows, "log": _log_rows}


def compute_features(tables: Mapping[str, pa.Table | None], bucket_seconds: int) -> pa.Table:
    """The features of curated rows: ``tables`` maps a kind (``log``, ``metric``, ``apm``) to its
    rows (the typing step's Arrow tables or a scan of the Iceberg tables; only
    :data:`INPUT_COLUMNS` are read). Rows are sorted by service, signal, name, bucket_start."""
    if bucket_seconds <= 0 or 3600 % bucket_seconds:
        raise ValueError(f"bucket_seconds must divide 3600, not {bucket_seconds}")
    parts = [
        _BUILDERS[kind](table, bucket_seconds)
        for kind, table in tables.items()
        if table is not None and table.num_rows
    ]
    if not parts:
        return ARROW_SCHEMA.empty_table()
    return pa.concat_tables(parts).sort_by(SORT_KEYS).combine_chunks()


def records_per_bucket(features: pa.Table) -> dict[datetime, int]:
    """Curated records behind each bucket of ``features`` (all services): metric samples plus
    spans plus log records, read off the rows that count them once."""
    signal, name = features.column("signal"), features.column("name")
    once = pc.or_(pc.equal(signal, "metric"), pc.equal(name, ALL))
    rows = features.filter(once).select(["bucket_start", "count"])
    sums = rows.group_by("bucket_start").aggregate([("count", "sum")])
    return dict(
        zip(
            sums.column("bucket_start").to_pylist(),
            sums.column("count_sum").to_pylist(),
            strict=True,
        )
    )


# --- reading the curated tables ---------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Partition:
    """One (service, dt, hr) partition, the unit the curated and features tables are rebuilt in."""

    service: str
    dt: date
    hr: int

    @property
    def start(self) -> datetime:
        return datetime(self.dt.year, self.dt.month, self.dt.day, self.hr, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=1)

    def row_filter(self) -> BooleanExpression:
        return And(
            EqualTo("service", self.service),
            EqualTo("dt", self.dt.isoformat()),
            EqualTo("hr", self.hr),
        )

    def __str__(self) -> str:
        return f"service={self.service}/dt={self.dt.isoformat()}/hr={self.hr:02d}"


def curated_identifier(kind: str) -> str:
    return f"{NAMESPACE}.{TABLE_NAMES[kind]}"


def open_curated(catalog: Catalog) -> dict[str, Table]:
    """The curated tables features are computed from, by kind, at their current snapshot."""
    return {kind: catalog.load_table(curated_identifier(kind)) for kind in SIGNALS}


# Columns read dictionary-encoded: a few distinct values each, kept in memory by FileCache.
_DICTIONARY_INPUTS = ("service", "metric_name", "name", "status", "level", "category")

# Curated data files read at once when a rebuild needs several.
_READERS = 8

# A data file with the delete files that apply to it: what one cached read depends on.
FileKey = tuple[str, tuple[str, ...]]


def _file_key(task: FileScanTask) -> FileKey:
    return task.file.file_path, tuple(sorted(d.file_path for d in task.delete_files))


def _compact(table: pa.Table) -> pa.Table:
    """``table`` with its low-cardinality strings dictionary-encoded, to keep in memory."""
    for i, name in enumerate(table.column_names):
        if name in _DICTIONARY_INPUTS:
            table = table.set_column(i, name, pc.dictionary_encode(table.column(i)))
    return table


def _as_read(rows: pa.Table, kind: str) -> pa.Table:
    """``rows`` of ``kind``'s curated table as reading its file for features gives them: the
    input columns in table order, in pyiceberg's read types."""
    target = schema_to_pyarrow(curated_schema(kind).select(*INPUT_COLUMNS[kind]))
    return pa.table([rows.column(f.name).cast(f.type) for f in target], schema=target)


def _read_file(reader: ArrowScan, task: FileScanTask) -> pa.Table:
    return _compact(reader.to_table([task]))


def _partition_of(task: FileScanTask) -> Partition:
    """The (service, dt, hr) of a data file, from its partition tuple (dt in days since 1970)."""
    values = task.file.partition
    return Partition(str(values[0]), _EPOCH + timedelta(days=int(values[1])), int(values[2]))


def _hours_of(partitions: Iterable[Partition]) -> BooleanExpression:
    """The hours of ``partitions``, every service: what a scan plan is filtered by. pyiceberg
    evaluates the plan filter once per data file, and an Or of one (service, dt, hr) per
    partition made planning cost seconds; the tasks are matched to partitions afterwards."""
    dts = sorted({p.dt.isoformat() for p in partitions})
    hrs = sorted({p.hr for p in partitions})
    return And(In("dt", dts), In("hr", hrs))


def _plan_by_partition(
    scan: DataScan, partitions: Iterable[Partition]
) -> tuple[dict[Partition, list[FileScanTask]], ArrowScan]:
    """The scan's files grouped by (service, dt, hr) partition (one plan for all of them; the
    filter on dt and hr alone also matches other services' files, left out here), and a reader
    of them."""
    tasks: dict[Partition, list[FileScanTask]] = {p: [] for p in partitions}
    for task in scan.plan_files():
        partition = _partition_of(task)
        if partition in tasks:
            tasks[partition].append(task)
    reader = ArrowScan(
        scan.table_metadata, scan.io, scan.projection(), scan.row_filter, scan.case_sensitive
    )
    return tasks, reader


def scan_partitions(
    tables: Mapping[str, Table],
    partitions: Mapping[Partition, dict[str, dict[FileKey, pa.Table]] | None],
) -> dict[Partition, dict[str, pa.Table]]:
    """The feature input columns of some (service, dt, hr) partitions of each curated table.

    One scan plan per table for all of them. With a cache for a partition (kind -> data file ->
    its rows), only files the cache does not hold are read, and files no longer in the table
    leave it. Iceberg data files never change, so the result is the same as a full scan, but an
    open hour that gains a file per commit is not read again whole at every rebuild.
    """
    out: dict[Partition, dict[str, pa.Table]] = {p: {} for p in partitions}
    for kind in SIGNALS:
        scan = tables[kind].scan(
            row_filter=_hours_of(partitions), selected_fields=INPUT_COLUMNS[kind]
        )
        tasks, reader = _plan_by_partition(scan, partitions)
        empty = schema_to_pyarrow(scan.projection()).empty_table()
        # The files no cache holds, read side by side: each is a GET of its own.
        missing = [
            task
            for partition, cache in partitions.items()
            if cache is not None
            for task in tasks[partition]
            if _file_key(task) not in cache.get(kind, {})
        ]
        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            fresh = dict(
                zip(
                    map(_file_key, missing),
                    pool.map(functools.partial(_read_file, reader), missing),
                    strict=True,
                )
            )
        for partition, cache in partitions.items():
            if cache is None:
                read = [reader.to_table(tasks[partition])] if tasks[partition] else []
            else:
                known = cache.get(kind, {})
                current = {
                    key: known[key] if key in known else fresh[key]
                    for key in map(_file_key, tasks[partition])
                }
                cache[kind] = current
                read = list(current.values())
            out[partition][kind] = (
                pa.concat_tables(read, promote_options="permissive") if read else empty
            )
    return out


def scan_curated(tables: Mapping[str, Table], partition: Partition) -> dict[str, pa.Table]:
    """The feature input columns of one (service, dt, hr) of each curated table."""
    return scan_partitions(tables, {partition: None})[partition]


def compute_partition(catalog: Catalog, partition: Partition, bucket_seconds: int) -> pa.Table:
    """The features of one (service, dt, hr), every bucket of it, from the curated tables."""
    return compute_features(scan_curated(open_curated(catalog), partition), bucket_seconds)


# --- the watermark and the writes -------------------------------------------------------------


def _as_datetime(now: datetime | float) -> datetime:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.astimezone(UTC)
    return datetime.fromtimestamp(now, UTC)


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


_TABLE_KINDS = {
    **{name: kind for kind, name in TABLE_NAMES.items()},
    **{kind: kind for kind in TABLE_NAMES},
}


def _kind_of(table: str) -> str | None:
    """``telemetry.logs``, ``logs`` or ``log`` -> ``log``; None for tables features ignore."""
    kind = _TABLE_KINDS.get(table.rsplit(".", 1)[-1])
    return kind if kind in SIGNALS else None


def _micros(moment: datetime) -> int:
    return int(moment.timestamp()) * _US + moment.microsecond


def _from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // _US, UTC) + timedelta(microseconds=micros % _US)


def _bucket_micros(rows: pa.Table, width: int) -> pa.ChunkedArray:
    """The start of each curated row's bucket, in µs since 1970 (as :func:`_plain` floors)."""
    micros = rows.column("timestamp").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return pc.multiply(pc.divide(micros, width), width)


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _split(
    rows: pa.Table, width: int, before: int, after: int
) -> tuple[pa.Table, pa.Table, pa.Table, set[int]]:
    """``rows`` cut by bucket start: before ``before``, in ``[before, after)``, from ``after``;
    and the bucket starts of the first part."""
    buckets = _bucket_micros(rows, width)
    early = pc.less(buckets, before)
    late_rows = rows.filter(early)
    starts = set(pc.unique(buckets.filter(early)).to_pylist()) if late_rows.num_rows else set()
    closing = rows.filter(pc.and_(pc.greater_equal(buckets, before), pc.less(buckets, after)))
    still_open = rows.filter(pc.greater_equal(buckets, after))
    return late_rows, closing, still_open, starts


def _of_buckets(rows: pa.Table, width: int, starts: set[int]) -> pa.Table:
    buckets = _bucket_micros(rows, width)
    return rows.filter(pc.is_in(buckets, value_set=pa.array(sorted(starts), pa.int64())))


def _without_buckets(features: pa.Table, starts: set[int]) -> pa.Table:
    micros = features.column("bucket_start").cast(pa.int64())
    keep = pc.invert(pc.is_in(micros, value_set=pa.array(sorted(starts), pa.int64())))
    return features.filter(keep)


def _of_partition(features: pa.Table, partition: Partition) -> pa.Table:
    """The rows of one (service, dt, hr) of ``features`` (sorted as it is)."""
    mask = pc.and_(
        pc.and_(
            pc.equal(features.column("service"), partition.service),
            pc.equal(features.column("dt"), pa.scalar(partition.dt, pa.date32())),
        ),
        pc.equal(features.column("hr"), partition.hr),
    )
    return features.filter(mask)


def _nbytes(rows: dict[str, list[pa.Table]] | None) -> int:
    return sum(t.nbytes for tables in (rows or {}).values() for t in tables)


# Snapshot summary properties of a features commit that a starting builder reads back: every
# curated commit before CURATED_THROUGH is in the table, except rows of buckets that were still
# open (those starting at or after CLOSED_BEFORE).
CLOSED_BEFORE = "features.closed-before"
CURATED_THROUGH = "features.curated-through"
# How long a commit of the fold may take to reach the features step (the callback runs right
# after the commit, the thread picks it up within a fold interval): older curated commits are
# taken as already handed over.
_HANDOVER_MARGIN = timedelta(minutes=2)
# Partitions rebuilt from the curated tables per commit (a first start over a lake with no
# features writes the table in steps instead of holding every input row at once).
_RESYNC_BATCH = 16


@dataclass
class _State:
    """What this builder knows of one features partition.

    A *synced* partition is one whose every curated row the builder has seen since it last
    rebuilt it from the curated tables (or since it was new): its closed buckets are computed
    from the rows in memory, never read back. An unsynced one is rebuilt from the curated tables
    at the next call (``resync``)."""

    synced: bool = False
    resync: bool = False
    # Records behind each written bucket, as written (late records are the growth past these).
    written: dict[datetime, int] = field(default_factory=dict)
    # Buckets starting before this are written (synced partitions).
    closed_before: datetime | None = None
    # What the table holds for the partition: its rows and data files (synced partitions).
    rows: list[pa.Table] = field(default_factory=list)
    data_files: list[DataFile] = field(default_factory=list)
    # Curated input rows of buckets not written yet, by kind (synced partitions).
    open_rows: dict[str, list[pa.Table]] = field(default_factory=dict)
    # Curated input rows of the written buckets, kept for late records; None once dropped to
    # stay within FEATURES_MEMORY_BYTES (a late record then makes the partition resync).
    closed_rows: dict[str, list[pa.Table]] | None = field(default_factory=dict)
    # Rows of the files the fold committed since the last call, by kind and data file.
    fresh: dict[str, dict[FileKey, pa.Table]] = field(default_factory=dict)
    touched: datetime | None = None
    # Bytes of closed_rows (kept up to date instead of summed over its tables at every call).
    closed_bytes: int = 0


@dataclass
class _Prepared:
    """A synced partition's rows to compute in this call, and what to do with the result."""

    partition: Partition
    state: _State
    inputs: dict[str, pa.Table | None]
    open_rows: dict[str, list[pa.Table]]
    closed_rows: dict[str, list[pa.Table]] | None
    late_starts: set[int]
    previous: datetime
    after: int
    added: int  # bytes the call adds to the kept rows


@dataclass
class _Staged:
    """What one call does to one partition, applied once its commit is done."""

    partition: Partition
    state: _State
    rows: list[pa.Table]
    write: pa.Table | None
    replace: bool
    written: dict[datetime, int]
    new_buckets: int
    late: int
    closed_before: datetime
    open_rows: dict[str, list[pa.Table]]
    closed_rows: dict[str, list[pa.Table]] | None
    resynced: bool
    closed_bytes: int = 0


@dataclass
class BuildReport:
    """What one :meth:`FeatureBuilder.after_commit` call did."""

    rebuilt: list[Partition]
    written: list[Partition]
    buckets_written: int
    late_records: int
    failed: dict[Partition, str]


COUNTER_NAMES = (
    "partitions_rebuilt",
    "partitions_written",
    "buckets_written",
    "late_records",
    "rebuild_failures",
)


class FeatureBuilder:
    """Keeps ``telemetry.features`` up to date with the curated tables, incrementally.

    The ETL's commit loop hands over the rows of the data files each commit added
    (:meth:`prime`) and the (table, service, dt, hr) partitions it touched
    (:meth:`after_commit`); :meth:`tick` is the same call with nothing touched, for time to
    close buckets while no data arrives. A call computes the buckets whose watermark passed from
    the rows in memory and appends them (one fast append for every partition); rows of a bucket
    already written (late) recompute that bucket from the rows kept for it and replace the
    partition's files. A partition the builder has not seen every row of (after a start, a
    commit it was not given the rows of, a late record after its rows were dropped) is rebuilt
    from the curated tables first. One builder per features table at a time (the ETL's writer
    lease); a commit refused because the table moved, or any failure, makes the builder start
    over from what the table and the curated tables hold.
    """

    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        *,
        counters: OutcomeCounters | None = None,
        retain_hours: float = 2.0,
    ) -> None:
        self._catalog = catalog
        self.bucket_seconds = settings.features_bucket_seconds
        self.lateness = timedelta(seconds=settings.features_allowed_lateness_seconds)
        self._memory = settings.features_memory_bytes
        self._retain = timedelta(hours=retain_hours)
        self.counters = counters or OutcomeCounters(
            "etl_features", COUNTER_NAMES, "telemetry.features outcomes"
        )
        self._lock = threading.Lock()
        self._states: dict[Partition, _State] = {}
        self._last_error: str | None = None
        self._last_write: datetime | None = None
        self._pending: tuple[str, ...] = ()
        self._table: Table | None = ensure_features_table(catalog)
        # Set by the first call (_recover): the partitions the curated tables held then.
        self._recovered = False
        self._seen: set[Partition] = set()
        # The marks the last commit wrote (CLOSED_BEFORE, CURATED_THROUGH).
        self._closed_mark: datetime | None = None
        self._through: datetime | None = None
        self._last_cutoff: datetime | None = None

    def closed_before(self, now: datetime) -> datetime:
        """Buckets that start before this instant have passed their watermark at ``now``."""
        cutoff = int((now - self.lateness).timestamp() * _US)
        width = self.bucket_seconds * _US
        return datetime.fromtimestamp((cutoff // width) * width / _US, UTC)

    def after_commit(
        self, touched: Iterable[tuple[str, str, date | str, int]], now: datetime | float
    ) -> BuildReport:
        """Write what is due after a commit that touched ``touched`` (table, service, dt, hr)."""
        moment = _as_datetime(now)
        with self._lock:
            for table, service, dt, hr in touched:
                kind = _kind_of(table)
                if kind is None:
                    continue
                partition = Partition(service, _as_date(dt), int(hr))
                state = self._states.get(partition)
                if state is None:
                    self._states[partition] = _State(resync=True, touched=moment)
                elif kind not in state.fresh:
                    # Rows this builder was not given: only the curated tables know them.
                    state.resync = True
            return self._run(moment)

    def tick(self, now: datetime | float) -> BuildReport:
        return self.after_commit((), now)

    def prime(self, files: Iterable[tuple[str, str, pa.Table]]) -> None:
        """Take (kind, data file path, its rows) of the files a commit just added: the rows of
        the file, in the table's schema; a file of one (service, dt, hr) partition."""
        with self._lock:
            for kind, path, rows in files:
                if kind not in SIGNALS or rows.num_rows == 0:
                    continue
                first = rows.slice(0, 1).to_pylist()[0]
                partition = Partition(first["service"], _as_date(first["dt"]), int(first["hr"]))
                state = self._states.get(partition)
                if state is None:
                    state = self._states[partition] = self._new_state(partition)
                state.fresh.setdefault(kind, {})[(path, ())] = _compact(_as_read(rows, kind))

    def _new_state(self, partition: Partition) -> _State:
        """A partition first seen in a commit's rows: new (synced and empty) when the curated
        tables did not hold it when this builder started and it has not been seen since."""
        if not self._recovered or partition in self._seen:
            return _State(resync=True)
        self._seen.add(partition)
        closed = partition.start
        if self._last_cutoff is not None:
            closed = min(max(closed, self._last_cutoff), partition.end)
        return _State(synced=True, closed_before=closed)

    def rebuild(self, partition: Partition, now: datetime | float) -> BuildReport:
        """Rebuild one partition from the curated tables now (a backfill or a repair)."""
        with self._lock:
            self._states.setdefault(partition, _State()).resync = True
            return self._run(_as_datetime(now), only=partition)

    def status(self) -> dict[str, Any]:
        """The table's figures for the service's JSON status and the dashboard.

        Does not wait for a call in progress (a rebuild may take seconds): the pending
        partitions are those left by the last finished call.
        """
        return {
            "table": FEATURES_TABLE,
            "location": FEATURES_LOCATION,
            "bucket_seconds": self.bucket_seconds,
            "allowed_lateness_seconds": self.lateness.total_seconds(),
            "pending_partitions": list(self._pending),
            "last_write": self._last_write.isoformat() if self._last_write else None,
            "last_error": self._last_error,
            **self.counters.snapshot(),
        }

    # --- one call ---------------------------------------------------------------------------

    def _features(self) -> Table:
        if self._table is None:
            self._table = self._catalog.load_table(FEATURES_TABLE)
        return self._table

    def _run(self, now: datetime, only: Partition | None = None) -> BuildReport:
        report = BuildReport([], [], 0, 0, {})
        cutoff = self.closed_before(now)
        if self._last_cutoff is not None:
            cutoff = max(cutoff, self._last_cutoff)
        involved = [only] if only is not None else sorted(self._pending_now())
        try:
            if not self._recovered:
                self._recover()
            self._call(now, cutoff, only, report)
        except Exception as exc:  # nothing is counted as done; the builder starts over
            self._fail(involved, exc, report)
        self._forget(now)
        self._pending = tuple(sorted(str(p) for p in self._pending_now()))
        return report

    def _pending_now(self) -> list[Partition]:
        """Partitions with rows not written yet, or to rebuild from the curated tables."""
        return [
            p for p, s in self._states.items() if s.resync or s.fresh or any(s.open_rows.values())
        ]

    def _call(
        self, now: datetime, cutoff: datetime, only: Partition | None, report: BuildReport
    ) -> None:
        candidates = [only] if only is not None else sorted(self._states)
        resync = [p for p in candidates if self._states[p].resync or not self._states[p].synced]
        staged: list[_Staged] = []
        prepared: list[_Prepared] = []
        for partition in candidates:
            state = self._states[partition]
            if partition in resync:
                continue
            item = self._prepare(partition, state, cutoff)
            if item is None:
                continue
            if isinstance(item, _State):  # a late record for rows no longer kept
                state.resync = True
                resync.append(partition)
                continue
            prepared.append(item)
        staged.extend(self._finish(prepared))
        # Rebuilds in batches, a commit each: a start over many hours never holds them all.
        resync.sort()
        batches = [resync[i : i + _RESYNC_BATCH] for i in range(0, len(resync), _RESYNC_BATCH)]
        for index, batch in enumerate(batches or [[]]):
            if batch:
                staged.extend(self._resync(batch, cutoff))
            self._commit(staged, now, cutoff, complete=index >= len(batches) - 1)
            for item in staged:
                self._apply(item, now, report)
            staged = []
            self._keep_within_memory()
        self._last_cutoff = cutoff

    def _prepare(self, partition: Partition, state: _State, cutoff: datetime) -> Any:
        """The rows of the buckets of a synced partition that closed, and of those late rows
        changed, from the rows in memory; None when nothing is due, the state itself when a late
        record needs rows that were dropped."""
        width = self.bucket_seconds * _US
        previous = state.closed_before or partition.start
        before = _micros(previous)
        after = max(_micros(min(max(cutoff, partition.start), partition.end)), before)
        fresh = {kind: list(files.values()) for kind, files in state.fresh.items()}
        unmerged = after >= _micros(partition.end) and len(state.data_files) > 1
        idle = after <= before or not any(state.open_rows.values())
        if not any(fresh.values()) and not unmerged and idle:
            return None
        open_rows: dict[str, list[pa.Table]] = {}
        cut: dict[str, tuple[pa.Table, pa.Table]] = {}
        late_starts: set[int] = set()
        for kind in SIGNALS:
            pending = _concat(state.open_rows.get(kind, []) + fresh.get(kind, []))
            if pending is None:
                continue
            late, closing, still_open, starts = _split(pending, width, before, after)
            late_starts |= starts
            cut[kind] = (late, closing)
            if still_open.num_rows:
                open_rows[kind] = [still_open]
        if late_starts and state.closed_rows is None:
            return state
        kept = state.closed_rows or {}
        inputs: dict[str, pa.Table | None] = {}
        closed_rows: dict[str, list[pa.Table]] | None = {}
        for kind in SIGNALS:
            late, closing = cut.get(kind, (None, None))
            parts = [t for t in (closing, late) if t is not None and t.num_rows]
            closed_rows[kind] = [*kept.get(kind, []), *parts]
            if late_starts:
                # A late bucket is computed again whole: every signal's rows of it.
                previous_rows = _concat(kept.get(kind, []))
                if previous_rows is not None:
                    parts.append(_of_buckets(previous_rows, width, late_starts))
            inputs[kind] = _concat(parts)
        if state.closed_rows is None:
            closed_rows = None  # dropped: the rows of written buckets are no longer complete
        added = sum(t.nbytes for kind, parts in cut.items() for t in parts if t.num_rows)
        return _Prepared(
            partition, state, inputs, open_rows, closed_rows, late_starts, previous, after, added
        )

    def _finish(self, prepared: list[_Prepared]) -> list[_Staged]:
        """The features of every prepared partition, computed in one call (its fixed cost is
        most of the work for the few rows of one fold's partition)."""
        if not prepared:
            return []
        combined = compute_features(
            {
                kind: _concat([t for p in prepared if (t := p.inputs.get(kind)) is not None])
                for kind in SIGNALS
            },
            self.bucket_seconds,
        )
        return [self._finish_one(p, _of_partition(combined, p.partition)) for p in prepared]

    def _finish_one(self, prepared: _Prepared, features: pa.Table) -> _Staged:
        partition, state = prepared.partition, prepared.state
        open_rows, closed_rows = prepared.open_rows, prepared.closed_rows
        late_starts, previous, after = prepared.late_starts, prepared.previous, prepared.after
        counts = records_per_bucket(features)
        late = sum(
            max(0, count - state.written.get(start, 0))
            for start, count in counts.items()
            if start < previous
        )
        written = {**state.written, **counts}
        new_buckets = len(counts.keys() - state.written.keys())
        closed_before = _from_micros(after)
        finished = after >= _micros(partition.end) and not open_rows
        replace = bool(late_starts) and bool(state.data_files)
        if late_starts:
            kept_rows = _concat(state.rows)
            if kept_rows is not None:
                kept_rows = _without_buckets(kept_rows, late_starts)
            rows = [_sorted(_concat([t for t in (kept_rows, features) if t is not None]))]
            write: pa.Table | None = rows[0]
        else:
            rows = [*state.rows, features] if features.num_rows else list(state.rows)
            write = features if features.num_rows else None
            if finished and len(state.data_files) + (write is not None) > 1:
                # The hour is closed: its files are replaced by one, so a closed hour of the
                # table is one file whatever the number of calls that wrote it.
                rows = [_sorted(_concat(rows))]  # type: ignore[arg-type]
                write, replace = rows[0], True
        return _Staged(
            partition,
            state,
            rows,
            write,
            replace,
            written,
            new_buckets,
            late,
            closed_before,
            open_rows,
            closed_rows,
            resynced=False,
            closed_bytes=state.closed_bytes + prepared.added if closed_rows is not None else 0,
        )

    def _resync(self, due: list[Partition], cutoff: datetime) -> list[_Staged]:
        """Rebuild ``due`` from the curated tables: one scan plan per curated table and one of
        the features table for all of them; only curated files not handed over are read."""
        width = self.bucket_seconds * _US
        curated = open_curated(self._catalog)
        existing = _features_of(self._features(), due)
        inputs = scan_partitions(curated, {p: self._states[p].fresh for p in due})
        staged = []
        for partition in due:
            state = self._states[partition]
            held, files = existing[partition]
            held_counts = records_per_bucket(held)
            previous = state.closed_before
            if previous is None and held_counts:
                previous = max(held_counts) + timedelta(seconds=self.bucket_seconds)
            cut = min(max(cutoff, partition.start), partition.end)
            features = compute_features(inputs[partition], self.bucket_seconds)
            closed = features.filter(pc.less(features.column("bucket_start"), pa.scalar(cut)))
            counts = records_per_bucket(closed)
            late = 0
            if previous is not None:
                late = sum(
                    max(0, count - held_counts.get(start, 0))
                    for start, count in counts.items()
                    if start < previous
                )
            changed = not held.equals(closed)
            open_rows: dict[str, list[pa.Table]] = {}
            closed_rows: dict[str, list[pa.Table]] = {}
            for kind, rows in inputs[partition].items():
                if rows.num_rows == 0:
                    continue
                _, done, still_open, _ = _split(rows, width, _micros(partition.start), _micros(cut))
                if done.num_rows:
                    closed_rows[kind] = [done]
                if still_open.num_rows:
                    open_rows[kind] = [still_open]
            state.data_files = files
            staged.append(
                _Staged(
                    partition,
                    state,
                    [closed],
                    closed if changed and closed.num_rows else None,
                    changed and bool(files),
                    counts,
                    len(counts.keys() - held_counts.keys()),
                    late,
                    cut,
                    open_rows,
                    closed_rows,
                    resynced=True,
                    closed_bytes=_nbytes(closed_rows),
                )
            )
        return staged

    def _commit(
        self, staged: list[_Staged], now: datetime, cutoff: datetime, complete: bool
    ) -> None:
        """One commit for every partition of the call: a fast append of the new buckets, or,
        when a partition's files are replaced (late records, a closed hour made one file), one
        overwrite that deletes exactly those files and adds the new ones."""
        writes = [item for item in staged if item.write is not None or item.replace]
        if complete:
            self._closed_mark = cutoff
            self._through = now - _HANDOVER_MARGIN
        if not writes:
            return
        table = self._features()
        by_partition = _write_files(table, [(i.partition, i.write) for i in writes if i.write])
        added = [data_file for files in by_partition.values() for data_file in files]
        deleted = [f for item in writes if item.replace for f in item.state.data_files]
        properties = {
            "features.partitions": ",".join(str(item.partition) for item in writes),
            "features.late-records": str(sum(item.late for item in writes)),
        }
        if self._closed_mark is not None and self._through is not None:
            properties[CLOSED_BEFORE] = self._closed_mark.isoformat()
            properties[CURATED_THROUGH] = self._through.isoformat()
        tx = table.transaction()
        snapshot = tx.update_snapshot(snapshot_properties=properties)
        with snapshot.overwrite() if deleted else snapshot.fast_append() as update:
            for data_file in deleted:
                update.delete_data_file(data_file)
            for data_file in added:
                update.append_data_file(data_file)
        tx.commit_transaction()
        for item in writes:
            files = by_partition.get(item.partition, [])
            item.state.data_files = files if item.replace else [*item.state.data_files, *files]
            self._last_write = now

    def _apply(self, item: _Staged, now: datetime, report: BuildReport) -> None:
        state = item.state
        wrote = item.write is not None or item.replace
        state.rows = item.rows
        state.written = item.written
        state.closed_before = item.closed_before
        state.open_rows = item.open_rows
        state.closed_rows = item.closed_rows
        state.closed_bytes = item.closed_bytes
        state.fresh = {}
        state.synced, state.resync = True, False
        state.touched = now
        if item.resynced:
            report.rebuilt.append(item.partition)
            self.counters.inc("partitions_rebuilt")
        if wrote:
            report.written.append(item.partition)
            self.counters.inc("partitions_written")
        report.buckets_written += item.new_buckets
        self.counters.inc("buckets_written", item.new_buckets)
        if item.late:
            report.late_records += item.late
            self.counters.inc("late_records", item.late)
            log.info("%d late records folded into the features of %s", item.late, item.partition)

    def _recover(self) -> None:
        """On the first call: mark for a rebuild from the curated tables every partition that
        may hold rows the features table does not reflect. The last features commit says up to
        when every curated commit was reflected (CURATED_THROUGH) and which buckets were still
        open (from CLOSED_BEFORE on); without those marks every partition is rebuilt."""
        table = self._features()
        snapshot = table.current_snapshot()
        marks = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
        closed = _mark(marks.get(CLOSED_BEFORE))
        through = _mark(marks.get(CURATED_THROUGH))
        seen: set[Partition] = set()
        due: set[Partition] = set()
        for curated in open_curated(self._catalog).values():
            if curated.current_snapshot() is None:
                continue
            oldest = min(s.timestamp_ms for s in curated.snapshots())
            rows = curated.inspect.partitions()
            updated = rows.column("last_updated_at").cast(pa.int64()).to_pylist()
            for values, last in zip(rows.column("partition").to_pylist(), updated, strict=True):
                partition = Partition(values["service"], _as_date(values["dt"]), int(values["hr"]))
                seen.add(partition)
                if (
                    closed is None
                    or through is None
                    or _micros(through) // 1000 < oldest
                    or partition.end > closed
                    or (last is not None and last >= _micros(through) // 1000)
                ):
                    due.add(partition)
        for partition in due:
            self._states.setdefault(partition, _State()).resync = True
        for state in self._states.values():
            if not state.synced:
                state.resync = True
        self._seen = seen | set(self._states)
        self._closed_mark, self._through = closed, through
        self._recovered = True

    def _fail(self, partitions: list[Partition], exc: BaseException, report: BuildReport) -> None:
        """Forget everything: the next call starts over from the tables, rebuilding what was
        due here and whatever the marks of the last commit say may be missing."""
        reason = f"{type(exc).__name__}: {exc}"
        due = [p for p in partitions if p in self._states] or partitions
        for partition in due:
            report.failed[partition] = reason
        self._states = {p: _State(resync=True) for p in due}
        self._table = None
        self._recovered = False
        self._last_error = f"{', '.join(map(str, due))}: {reason}"
        self.counters.inc("rebuild_failures", len(due))
        log.warning("features of %s not written (retried next time): %s", due, reason)

    def _forget(self, now: datetime) -> None:
        """Drop what is known of partitions nothing touched for a while; a late record for one
        rebuilds it from the tables."""
        horizon = now - self._retain
        for partition in [
            p
            for p, s in self._states.items()
            if s.synced
            and not s.resync
            and not s.fresh
            and not any(s.open_rows.values())
            and s.touched is not None
            and s.touched < horizon
        ]:
            del self._states[partition]

    def _keep_within_memory(self) -> None:
        """Drop the kept rows of written buckets, least recently touched partition first, while
        they take more than FEATURES_MEMORY_BYTES."""
        kept = {p: s.closed_bytes for p, s in self._states.items()}
        total = sum(kept.values())
        if total <= self._memory:
            return
        oldest = datetime.min.replace(tzinfo=UTC)
        for partition in sorted(kept, key=lambda p: self._states[p].touched or oldest):
            if total <= self._memory:
                break
            if kept[partition]:
                self._states[partition].closed_rows = None
                self._states[partition].closed_bytes = 0
                total -= kept[partition]


# Features files written at once (as the fold writes its data files: Arrow encodes and uploads
# outside the GIL).
_WRITERS = 2


def _write_files(
    table: Table, parts: list[tuple[Partition, pa.Table]]
) -> dict[Partition, list[DataFile]]:
    """One Parquet file of ``table`` per partition's rows, with the table's writer properties
    (``tables.write_data_file``: its size from the stream, no request to ask S3 for it)."""
    options = {"store_decimal_as_integer": True, **_get_parquet_writer_kwargs(table.properties)}
    write_id = uuid.uuid4()

    def write_one(item: tuple[int, tuple[Partition, pa.Table]]) -> tuple[Partition, DataFile]:
        index, (partition, rows) = item
        data_file = write_data_file(
            table,
            rows.cast(ARROW_SCHEMA),
            (partition.service, partition.dt, partition.hr),
            name=f"00000-{index}-{write_id}.parquet",
            writer_options=options,
        )
        # Not kept by DataFile.from_args; an overwrite that deletes the file later needs it.
        data_file.spec_id = table.metadata.default_spec_id
        return partition, data_file

    out: dict[Partition, list[DataFile]] = {}
    with ThreadPoolExecutor(_WRITERS, thread_name_prefix="etl-features-write") as pool:
        for partition, data_file in pool.map(write_one, enumerate(parts)):
            out.setdefault(partition, []).append(data_file)
    return out


def _sorted(table: pa.Table | None) -> pa.Table:
    if table is None:
        return ARROW_SCHEMA.empty_table()
    return table.cast(ARROW_SCHEMA).sort_by(SORT_KEYS).combine_chunks()


def _mark(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _features_of(
    table: Table, partitions: list[Partition]
) -> dict[Partition, tuple[pa.Table, list[DataFile]]]:
    """The rows (sorted, in :data:`ARROW_SCHEMA`) and data files the features table holds for
    each of ``partitions``: one scan plan for all of them."""
    out: dict[Partition, tuple[pa.Table, list[DataFile]]] = {
        p: (ARROW_SCHEMA.empty_table(), []) for p in partitions
    }
    if table.current_snapshot() is None:
        return out
    tasks, reader = _plan_by_partition(table.scan(row_filter=_hours_of(partitions)), partitions)
    for partition, found in tasks.items():
        if not found:
            continue
        if any(task.delete_files for task in found):
            raise RuntimeError(f"features {partition}: delete files are not expected")
        rows = reader.to_table(found).select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)
        out[partition] = (rows.sort_by(SORT_KEYS).combine_chunks(), [t.file for t in found])
    return out

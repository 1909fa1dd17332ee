"""``telemetry.features``: per-service signals in fixed time buckets, computed from the curated
tables (``telemetry.logs``, ``telemetry.metrics``, ``telemetry.apm``), never from the raw zone.

Invariants:

- A (service, dt, hr) partition of the features table is a pure function of the curated rows of
  that service and hour and of ``FEATURES_BUCKET_SECONDS``: :func:`compute_features` reads only the
  columns in :data:`INPUT_COLUMNS` (no ground-truth label, no ``anomaly_score``), sums in a fixed
  order and sorts its output, so a re-run gives the same rows, whatever the file layout.
- A bucket ``[start, start + width)`` is written once its watermark ``start + width +
  FEATURES_ALLOWED_LATENESS_SECONDS`` has passed; the partition is rebuilt whole from the curated
  tables and replaced (delete of the partition + append, in one commit with the other partitions
  of the call), which is idempotent.
- Records that reach the curated tables after their bucket was closed (at the partition's
  previous rebuild) are *late*: they are still folded into the bucket at the next rebuild (so the
  table stays a function of the curated rows) and counted (``etl_features_late_records_total``
  and :meth:`FeatureBuilder.status`).
- A failed call leaves its partitions due, with nothing counted as done: they are retried at
  the next call, and the failure is counted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, Or
from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table
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


def _any_of(partitions: Iterable[Partition]) -> BooleanExpression:
    return functools.reduce(Or, (p.row_filter() for p in partitions))


def _hours_of(partitions: Iterable[Partition]) -> BooleanExpression:
    """The hours of ``partitions``, every service: what a scan plan is filtered by. pyiceberg
    evaluates the plan filter once per data file, and an Or of one (service, dt, hr) per
    partition made planning cost seconds; the tasks are matched to partitions afterwards."""
    dts = sorted({p.dt.isoformat() for p in partitions})
    hrs = sorted({p.hr for p in partitions})
    return And(In("dt", dts), In("hr", hrs))


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
        tasks: dict[Partition, list[FileScanTask]] = {p: [] for p in partitions}
        for task in scan.plan_files():
            partition = _partition_of(task)
            if partition in tasks:
                tasks[partition].append(task)
        reader = ArrowScan(
            scan.table_metadata, scan.io, scan.projection(), scan.row_filter, scan.case_sensitive
        )
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


@dataclass
class _State:
    """What this builder knows of one features partition."""

    # Records behind each written bucket, as written (late records are the growth past these).
    written: dict[datetime, int] = field(default_factory=dict)
    rows: pa.Table | None = None
    # Buckets starting before this were closed at the last rebuild.
    closed_before: datetime | None = None
    # The last rebuild saw records in buckets that were still open.
    open_records: bool = False
    # Touched by a commit (or a failed rebuild) since the last successful rebuild.
    dirty: bool = False
    loaded: bool = False
    # The curated rows of the partition by data file (see scan_curated).
    files: dict[str, dict[FileKey, pa.Table]] = field(default_factory=dict)


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
    """Keeps ``telemetry.features`` up to date with the curated tables.

    The ETL's commit loop calls :meth:`after_commit` with the (table, service, dt, hr) partitions
    each successful commit touched and the time; :meth:`tick` is the same call with nothing
    touched, for time to close buckets while no data arrives. Both rebuild every partition that
    is due: touched and holding closed buckets, or holding records in buckets that have closed
    since its last rebuild. One builder per features table at a time (the ETL's writer lease).
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
        self._retain = timedelta(hours=retain_hours)
        self.counters = counters or OutcomeCounters(
            "etl_features", COUNTER_NAMES, "telemetry.features outcomes"
        )
        self._lock = threading.Lock()
        self._states: dict[Partition, _State] = {}
        self._last_error: str | None = None
        self._last_write: datetime | None = None
        self._pending: tuple[str, ...] = ()
        self._table = ensure_features_table(catalog)

    def closed_before(self, now: datetime) -> datetime:
        """Buckets that start before this instant have passed their watermark at ``now``."""
        cutoff = int((now - self.lateness).timestamp() * _US)
        width = self.bucket_seconds * _US
        return datetime.fromtimestamp((cutoff // width) * width / _US, UTC)

    def after_commit(
        self, touched: Iterable[tuple[str, str, date | str, int]], now: datetime | float
    ) -> BuildReport:
        """Rebuild what is due after a commit that touched ``touched`` (table, service, dt, hr)."""
        moment = _as_datetime(now)
        with self._lock:
            for table, service, dt, hr in touched:
                if _kind_of(table) is None:
                    continue
                partition = Partition(service, _as_date(dt), int(hr))
                self._states.setdefault(partition, _State()).dirty = True
            return self._run(moment)

    def tick(self, now: datetime | float) -> BuildReport:
        return self.after_commit((), now)

    def prime(self, files: Iterable[tuple[str, str, pa.Table]]) -> None:
        """Take (kind, data file path, its rows) of files a commit just added as if read from
        the table: a rebuild then reads only the files it was not given. The rows are those of
        the file, in the table's schema; a file of one (service, dt, hr) partition."""
        with self._lock:
            for kind, path, rows in files:
                if kind not in SIGNALS or rows.num_rows == 0:
                    continue
                first = rows.slice(0, 1).to_pylist()[0]
                partition = Partition(first["service"], _as_date(first["dt"]), int(first["hr"]))
                state = self._states.setdefault(partition, _State())
                state.files.setdefault(kind, {})[(path, ())] = _compact(_as_read(rows, kind))

    def rebuild(self, partition: Partition, now: datetime | float) -> BuildReport:
        """Rebuild one partition now, touched or not (a backfill or a repair)."""
        with self._lock:
            self._states.setdefault(partition, _State()).dirty = True
            return self._run(_as_datetime(now), only=partition)

    def status(self) -> dict[str, Any]:
        """The table's figures for the service's JSON status and the dashboard.

        Does not wait for a rebuild in progress (it may take seconds): the pending partitions
        are those left by the last finished call.
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

    def _due(self, partition: Partition, state: _State, cutoff: datetime) -> bool:
        closed = min(max(cutoff, partition.start), partition.end)
        if closed <= partition.start:
            return False
        if state.dirty:
            return True
        return state.open_records and (state.closed_before is None or closed > state.closed_before)

    def _run(self, now: datetime, only: Partition | None = None) -> BuildReport:
        cutoff = self.closed_before(now)
        candidates = [only] if only is not None else sorted(self._states)
        due = [p for p in candidates if self._due(p, self._states[p], cutoff)]
        report = BuildReport([], [], 0, 0, {})
        if due:
            try:
                self._rebuild(due, cutoff, now, report)
            except Exception as exc:  # any failure leaves the partitions due
                self._fail(due, exc, report)
        self._forget(now)
        self._pending = tuple(
            sorted(str(p) for p, s in self._states.items() if s.dirty or s.open_records)
        )
        return report

    def _fail(self, partitions: list[Partition], exc: BaseException, report: BuildReport) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        for partition in partitions:
            self._states[partition].dirty = True
            report.failed[partition] = reason
        self._last_error = f"{', '.join(map(str, partitions))}: {reason}"
        self.counters.inc("rebuild_failures", len(partitions))
        log.warning("features of %s not rebuilt (retried next time): %s", partitions, reason)

    def _load(self, features: Table, partition: Partition, state: _State) -> None:
        """What an earlier builder wrote for ``partition`` (after a restart), once."""
        existing = features.scan(row_filter=partition.row_filter()).to_arrow()
        if existing.num_rows:
            existing = existing.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA).sort_by(SORT_KEYS)
            state.rows = existing.combine_chunks()
            state.written = records_per_bucket(existing)
        state.loaded = True

    def _late(self, state: _State, counts: dict[datetime, int]) -> int:
        """Records gained by buckets already closed at the last rebuild (after a restart: those
        up to the newest bucket the table holds), whether or not the bucket had a row then."""
        previous = state.closed_before
        if previous is None and state.written:
            previous = max(state.written) + timedelta(seconds=self.bucket_seconds)
        if previous is None:
            return 0
        return sum(
            max(0, count - state.written.get(start, 0))
            for start, count in counts.items()
            if start < previous
        )

    def _rebuild(
        self, due: list[Partition], cutoff: datetime, now: datetime, report: BuildReport
    ) -> None:
        """Recompute ``due`` and write the partitions whose rows changed in one commit.

        One scan plan per curated table and one features commit per call, whatever the number
        of partitions: per-partition planning and commits were most of a rebuild's cost. State
        and counters change only once the commit is done, so a failed call is retried whole and
        counts nothing twice.
        """
        tables = {
            **open_curated(self._catalog),
            "features": self._catalog.load_table(FEATURES_TABLE),
        }
        features_table = tables["features"]
        for partition in due:
            if not self._states[partition].loaded:
                self._load(features_table, partition, self._states[partition])
        inputs = scan_partitions(tables, {p: self._states[p].files for p in due})
        staged: list[tuple[Partition, pa.Table, dict[datetime, int], bool, int, bool]] = []
        for partition in due:
            state = self._states[partition]
            features = compute_features(inputs[partition], self.bucket_seconds)
            closed = features.filter(pc.less(features.column("bucket_start"), pa.scalar(cutoff)))
            counts = records_per_bucket(closed)
            unchanged = (state.rows is not None and state.rows.equals(closed)) or (
                state.rows is None and closed.num_rows == 0
            )
            open_records = closed.num_rows < features.num_rows
            staged.append(
                (partition, closed, counts, not unchanged, self._late(state, counts), open_records)
            )

        changed = [item for item in staged if item[3]]
        if changed:
            late = sum(item[4] for item in changed)
            properties = {
                "features.partitions": ",".join(str(item[0]) for item in changed),
                "features.late-records": str(late),
            }
            replaced = [item[0] for item in changed if self._states[item[0]].rows is not None]
            with features_table.transaction() as tx:
                if replaced:
                    tx.delete(_any_of(replaced), snapshot_properties=properties)
                tx.append(
                    pa.concat_tables([item[1] for item in changed]),
                    snapshot_properties=properties,
                )

        for partition, closed, counts, wrote, late, open_records in staged:
            state = self._states[partition]
            if wrote:
                new_buckets = len(counts.keys() - state.written.keys())
                state.rows = closed
                report.written.append(partition)
                report.buckets_written += new_buckets
                self.counters.inc("partitions_written")
                self.counters.inc("buckets_written", new_buckets)
                self._last_write = now
            state.written = counts
            state.closed_before = cutoff
            state.open_records = open_records
            state.dirty = False
            if not open_records and cutoff >= partition.end:
                # Every bucket closed: only late records touch it now, rarely; free the rows.
                state.files = {}
            report.rebuilt.append(partition)
            report.late_records += late
            self.counters.inc("partitions_rebuilt")
            if late:
                self.counters.inc("late_records", late)
                log.info("%d late records folded into the features of %s", late, partition)

    def _forget(self, now: datetime) -> None:
        """Drop what is known of hours long closed; a late touch reloads it from the table."""
        horizon = now - self.lateness - self._retain
        for partition in [p for p, s in self._states.items() if p.end < horizon and not s.dirty]:
            del self._states[partition]

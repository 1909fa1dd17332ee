"""Reading ``telemetry.features`` incrementally: per service, the data files added to the table
since the last read (by their Iceberg sequence number), pivoted into one point per bucket with a
value per configured series.

The features table only holds buckets whose watermark has passed (``stages/etl/features.py``),
so a bucket read here is complete. Which of the buckets read are new to a service, and what to
do with those older than its newest one, is the worker's business (``progress.py``). Only the
columns in :func:`read_columns` are read; the features table has no ground-truth column at all,
and detection never asks for one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThanOrEqual,
)
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile, ManifestContent
from pyiceberg.table import FileScanTask, Table

from stages.common.lakehouse import FEATURES_TABLE

# Columns of telemetry.features a series may take its value from.
VALUE_COLUMNS = ("count", "error_count", "error_rate", "mean", "min", "max", "p50", "p95", "p99")
KEY_COLUMNS = ("service", "signal", "name", "bucket_start")
_SERIES_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One scored series: ``series`` is the name events, rules and voting policies use."""

    series: str
    signal: str
    name: str
    column: str

    def __str__(self) -> str:
        return f"{self.series}={self.signal}:{self.name}:{self.column}"


def parse_series(text: str) -> tuple[SeriesSpec, ...]:
    """``<series>=<signal>:<name>:<column>`` entries separated by commas; ValueError naming the
    entry when one is malformed."""
    specs: list[SeriesSpec] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        series, sep, source = entry.partition("=")
        signal, _, rest = source.partition(":")
        name, _, column = rest.rpartition(":")
        series = series.strip()
        if not sep or not _SERIES_NAME.match(series) or not name:
            raise ValueError(
                f"DETECTION_SERIES entry {entry!r} is not '<series>=<signal>:<name>:<column>' "
                "(series: letters, digits, _ . -)"
            )
        if signal not in {"metric", "apm", "log"}:
            raise ValueError(f"DETECTION_SERIES entry {entry!r}: signal must be metric, apm or log")
        if column not in VALUE_COLUMNS:
            columns = ", ".join(VALUE_COLUMNS)
            raise ValueError(f"DETECTION_SERIES entry {entry!r}: column must be one of {columns}")
        specs.append(SeriesSpec(series, signal, name, column))
    if not specs:
        raise ValueError("DETECTION_SERIES names no series")
    if len({s.series for s in specs}) != len(specs):
        raise ValueError("DETECTION_SERIES names a series twice")
    return tuple(specs)


def read_columns(specs: Iterable[SeriesSpec]) -> tuple[str, ...]:
    """Every column detection reads: the key columns and the value columns of the series."""
    columns = list(KEY_COLUMNS)
    for spec in specs:
        if spec.column not in columns:
            columns.append(spec.column)
    return tuple(columns)


@dataclass(frozen=True, slots=True)
class Point:
    timestamp: float  # the bucket's start, epoch seconds
    values: dict[str, float]  # series -> value (series without a finite value are absent)


@dataclass(frozen=True, slots=True)
class Increment:
    """What one :meth:`FeatureReader.read` found."""

    snapshot_id: int | None  # the snapshot read (None: the table is empty or missing)
    sequence: int | None  # its sequence number: every data file at or below it has been read
    points: dict[str, list[Point]]  # per service, the buckets of the files read, in order


class FeatureReader:
    def __init__(self, catalog: Catalog, specs: tuple[SeriesSpec, ...]) -> None:
        self.catalog = catalog
        self.specs = specs
        self.columns = read_columns(specs)
        self._discovered: tuple[int | None, frozenset[str]] = (None, frozenset())

    def discover(self) -> frozenset[str]:
        """Every service with a partition in the features table, from the scan plan (the
        partition values of the data files; no data file is read), cached per snapshot."""
        try:
            table = self.catalog.load_table(FEATURES_TABLE)
        except NoSuchTableError:
            return frozenset()
        snapshot = table.current_snapshot()
        if snapshot is None:
            return frozenset()
        if self._discovered[0] == snapshot.snapshot_id:
            return self._discovered[1]
        position = [f.name for f in table.spec().fields].index("service")
        names = frozenset(
            str(task.file.partition[position])
            for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
            if task.file.partition[position] is not None
        )
        self._discovered = (snapshot.snapshot_id, names)
        return names

    def read(self, since: Mapping[str, int | None]) -> Increment:
        """The buckets of the data files added for each service of ``since`` after the sequence
        number it maps to (None: every data file of the service), at the current snapshot.

        Only the manifests added after the lowest of those numbers are opened: a manifest holds
        no file newer than itself. A file can bring buckets already read (an hour rewritten by
        the ETL); the caller sorts them out."""
        try:
            table = self.catalog.load_table(FEATURES_TABLE)
        except NoSuchTableError:
            return Increment(None, None, {})
        snapshot = table.current_snapshot()
        if snapshot is None or not since:
            return Increment(None, None, {})
        if table.metadata.format_version < 2:
            # No sequence numbers in a v1 table: every round reads every file.
            since = dict.fromkeys(since)
        floor = min(-1 if done is None else done for done in since.values())
        position = [f.name for f in table.spec().fields].index("service")
        files: list[DataFile] = []
        deletes = False
        for manifest in snapshot.manifests(table.io):
            if manifest.content == ManifestContent.DELETES:
                deletes = True
                continue
            if manifest.sequence_number is not None and manifest.sequence_number <= floor:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                service = entry.data_file.partition[position]
                if service not in since:
                    continue
                done = since[service]
                if done is None or (entry.sequence_number or 0) > done:
                    files.append(entry.data_file)
        if not files:
            return Increment(snapshot.snapshot_id, snapshot.sequence_number, {})
        rows = self._read_files(table, snapshot.snapshot_id, files, deletes)
        return Increment(snapshot.snapshot_id, snapshot.sequence_number, self.pivot(rows, {}))

    def _row_filter(self) -> BooleanExpression:
        return And(
            In("signal", {s.signal for s in self.specs}),
            In("name", {s.name for s in self.specs}),
        )

    def _read_files(
        self, table: Table, snapshot_id: int, files: list[DataFile], deletes: bool
    ) -> pa.Table:
        scan = table.scan(
            snapshot_id=snapshot_id, row_filter=self._row_filter(), selected_fields=self.columns
        )
        if deletes:
            # Another engine wrote delete files (pyiceberg never does): the scan plan pairs
            # each data file with those that apply to it.
            paths = {f.file_path for f in files}
            tasks = [t for t in scan.plan_files() if t.file.file_path in paths]
        else:
            tasks = [FileScanTask(f) for f in files]
        reader = ArrowScan(
            scan.table_metadata, scan.io, scan.projection(), scan.row_filter, scan.case_sensitive
        )
        return reader.to_table(tasks)

    def read_range(self, snapshot_id: int, service: str, first: float, last: float) -> list[Point]:
        """The service's buckets starting in [first, last] at ``snapshot_id``, in order."""
        table = self.catalog.load_table(FEATURES_TABLE)
        start, end = as_datetime(first), as_datetime(last)
        row_filter = And(
            self._row_filter(),
            EqualTo("service", service),
            # dt prunes partitions; bucket_start the rows.
            GreaterThanOrEqual("dt", start.date().isoformat()),
            LessThanOrEqual("dt", end.date().isoformat()),
            GreaterThanOrEqual("bucket_start", start.isoformat()),
            LessThanOrEqual("bucket_start", end.isoformat()),
        )
        scan = table.scan(
            snapshot_id=snapshot_id, row_filter=row_filter, selected_fields=self.columns
        )
        return self.pivot(scan.to_arrow(), {}).get(service, [])

    def pivot(self, rows: pa.Table, marks: Mapping[str, float]) -> dict[str, list[Point]]:
        if rows.num_rows == 0:
            return {}
        starts = pc.divide(
            rows["bucket_start"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), 1_000_000
        )
        wanted: dict[tuple[str, str], list[SeriesSpec]] = {}
        for spec in self.specs:
            wanted.setdefault((spec.signal, spec.name), []).append(spec)
        values = {column: rows[column].to_pylist() for column in {s.column for s in self.specs}}
        buckets: dict[str, dict[float, dict[str, float]]] = {}
        for i, (service, signal, name, start) in enumerate(
            zip(
                rows["service"].to_pylist(),
                rows["signal"].to_pylist(),
                rows["name"].to_pylist(),
                starts.to_pylist(),
                strict=True,
            )
        ):
            specs = wanted.get((signal, name))
            if not specs or service is None or start is None:
                continue
            timestamp = float(start)
            mark = marks.get(service)
            if mark is not None and timestamp <= mark:
                continue
            point = buckets.setdefault(service, {}).setdefault(timestamp, {})
            for spec in specs:
                value = values[spec.column][i]
                if value is not None and math.isfinite(value):
                    point[spec.series] = float(value)
        return {
            service: [Point(t, v) for t, v in sorted(points.items())]
            for service, points in sorted(buckets.items())
        }


def as_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)

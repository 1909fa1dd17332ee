"""Commits to the Iceberg tables by the one writer that holds the lease, exactly once per object.

Every row of a data table carries ``source_key``, the raw object it was typed from (the
quarantine table has the same column), and a commit adds an object's rows to a table all at once
or not at all. So "which objects does table T hold" is the set of ``source_key`` values in T, and
it moves atomically with the rows. Before a commit the writer drops the rows of every object T
already holds: an object folded again (after a crash between two tables' commits, or by a writer
that took over) adds nothing twice.

- The tables' own commit retries are switched off (``commit.retry.num-retries = 0``): pyiceberg
  would otherwise re-apply an append on top of a concurrent commit without looking at what that
  commit holds. A refused commit (``CommitFailedException``: the emulator and Glue check the
  table's version) is retried here, from a fresh load of the table and of the ``source_key`` set
  of the rows it is about to write, and counted.
- Each snapshot records the writer's lease token (``etl.fence``). A writer refuses to commit on
  top of a snapshot with a larger token: it was replaced, and its lease is gone.
- The ``source_key`` sets are learnt on start without scanning every table: the writer keeps the
  source keys of each data file it appends (``file_keys``) and checkpoints them now and then
  (``save_held``) to ``s3://<warehouse bucket>/_etl-state/source-keys/<table>.parquet``. A start
  (``load_held``) lists the table's current data files and takes each file's keys from the
  checkpoint, or reads them from the file when the checkpoint does not list it. A data file never
  changes and the list of current files comes from the table, so the result is the scan's
  whatever the checkpoint's age; a missing or damaged checkpoint means reading every file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, In
from pyiceberg.table import Table
from pyiceberg.types import StringType

from stages.common.named_lease import LeaseLost, NamedLease
from stages.etl import metrics
from stages.etl.datafiles import WrittenFile, write_data_files
from stages.etl.tables import TABLE_NAMES, ensure_tables

log = logging.getLogger(__name__)

FENCE_PROPERTY = "etl.fence"
OWNER_PROPERTY = "etl.owner"
NO_RETRIES = {"commit.retry.num-retries": "0"}
MAX_ATTEMPTS = 5
# Checkpoints of the source keys per data file, under the warehouse bucket; "_" keeps them out
# of every reader's listing.
CHECKPOINT_PREFIX = "_etl-state/source-keys"
# Data files whose source keys are read at once when no checkpoint lists them.
READERS = 8
SOURCE = "source_key"
PARTITION_COLUMNS = ("service", "dt", "hr")


class Fenced(LeaseLost):
    """The table's newest snapshot was written by a later holder of the lease."""


@dataclass(frozen=True)
class Partition:
    table: str  # the table's name (logs, metrics, apm, quarantine)
    service: str
    dt: Any  # datetime.date
    hr: int


def with_source(table: pa.Table, key: str) -> pa.Table:
    """``table`` with a ``source_key`` column holding ``key`` on every row (dictionary-encoded)."""
    indices = (
        pa.array([0] * table.num_rows, pa.int32()) if table.num_rows else pa.array([], pa.int32())
    )
    column = pa.DictionaryArray.from_arrays(indices, pa.array([key], pa.string()))
    return table.append_column(SOURCE, column)


def combine(parts: Iterable[pa.Table]) -> pa.Table:
    """One table of ``parts`` with one dictionary per column (Arrow's group-by, which the
    partitioned write uses, cannot unify differing dictionaries of several chunks)."""
    rows = pa.concat_tables(list(parts), promote_options="permissive")
    return rows.unify_dictionaries().combine_chunks()


class _DictionaryNotice(logging.Filter):
    """pyiceberg warns on every write that a dictionary column is read back as plain strings,
    which is what the tables' schemas say anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not have a dictionary type" not in record.getMessage()


logging.getLogger("pyiceberg.io.pyarrow").addFilter(_DictionaryNotice())


def partitions_of(name: str, rows: pa.Table) -> set[Partition]:
    if rows.num_rows == 0:
        return set()
    plain = rows.select(list(PARTITION_COLUMNS)).cast(
        pa.schema([("service", pa.string()), ("dt", pa.date32()), ("hr", pa.int32())])
    )
    groups = plain.group_by(list(PARTITION_COLUMNS)).aggregate([])
    return {
        Partition(name, s, d, h)
        for s, d, h in zip(*(groups.column(c).to_pylist() for c in PARTITION_COLUMNS), strict=True)
    }


class Committer:
    """The tables, the ``source_key`` sets they hold, and guarded commits to them."""

    def __init__(
        self,
        catalog: Catalog,
        lease: NamedLease,
        lease_margin_seconds: float,
        *,
        store: Any = None,
    ) -> None:
        self.catalog = catalog
        # What uploads the data files (``reads.RawReader.put``: obstore), else the table's
        # FileIO.
        self.put = store.put if store is not None else None
        self.lease = lease
        self.margin = lease_margin_seconds
        self.tables: dict[str, Table] = {}
        # kind -> source keys the table holds (every object with rows in it)
        self.held: dict[str, set[str]] = {kind: set() for kind in TABLE_NAMES}
        # kind -> data file -> the source keys of its rows, where known
        self.file_keys: dict[str, dict[str, frozenset[str]]] = {k: {} for k in TABLE_NAMES}
        # (kind, file) of every append since the last take_written()
        self.written: list[tuple[str, WrittenFile]] = []

    def open(self) -> None:
        self.tables = ensure_tables(self.catalog)
        for kind, table in self.tables.items():
            if SOURCE not in {f.name for f in table.schema().fields}:
                # A table created before the lineage column: add it (old rows read as null).
                with table.update_schema() as update:
                    update.add_column(SOURCE, StringType())
                table = self.tables[kind] = self.catalog.load_table(table.name())
            if any(table.properties.get(k) != v for k, v in NO_RETRIES.items()):
                with table.transaction() as tx:
                    tx.set_properties(NO_RETRIES)
                self.tables[kind] = self.catalog.load_table(table.name())

    def load_held(self) -> None:
        """Every table's ``source_key`` set (on start and takeover): the keys of each current
        data file from the checkpoint where it lists the file, read from the file where not."""
        for kind in TABLE_NAMES:
            table = self.reload(kind)
            self.file_keys[kind] = self._reconcile(table, self._read_checkpoint(kind, table))
            self.held[kind] = set().union(*self.file_keys[kind].values())

    def save_held(self) -> None:
        """Write every table's checkpoint of source keys per data file (see the module's
        opening lines): files this process did not write (compaction, backfill) are read."""
        for kind in TABLE_NAMES:
            table = self.reload(kind)
            self.file_keys[kind] = self._reconcile(table, self.file_keys[kind])
            paths, keys = [], []
            for path, file_keys in self.file_keys[kind].items():
                paths.extend([path] * len(file_keys))
                keys.extend(file_keys)
            rows = pa.table(
                {
                    "file_path": pc.dictionary_encode(pa.array(paths, pa.string())),
                    SOURCE: pa.array(keys, pa.string()),
                }
            )
            with table.io.new_output(checkpoint_location(kind, table)).create(
                overwrite=True
            ) as stream:
                pq.write_table(rows, stream, compression="zstd")
            metrics.SOURCE_KEY_CHECKPOINTS.inc()

    def _read_checkpoint(self, kind: str, table: Table) -> dict[str, frozenset[str]]:
        location = checkpoint_location(kind, table)
        try:
            with table.io.new_input(location).open() as stream:
                rows = pq.read_table(stream, read_dictionary=["file_path"])
        except FileNotFoundError:
            return {}
        except Exception as exc:
            # Only a cost: every file is read instead.
            log.warning("%s unreadable (%s); reading every data file's source keys", location, exc)
            return {}
        known: dict[str, set[str]] = {}
        paths = rows.column("file_path").to_pylist()
        for path, key in zip(paths, rows.column(SOURCE).to_pylist(), strict=True):
            known.setdefault(path, set()).add(key)
        return {path: frozenset(keys) for path, keys in known.items()}

    def _reconcile(
        self, table: Table, known: dict[str, frozenset[str]]
    ) -> dict[str, frozenset[str]]:
        """The source keys of each current data file of ``table``: from ``known`` when it lists
        the file (a data file never changes), else read from the file."""
        if table.current_snapshot() is None:
            return {}
        paths = [task.file.file_path for task in table.scan().plan_files()]
        missing = [path for path in paths if path not in known]
        metrics.SOURCE_KEY_FILES_READ.inc(len(missing))
        with ThreadPoolExecutor(READERS, thread_name_prefix="etl-keys") as pool:
            found = pool.map(lambda path: _file_source_keys(table, path), missing)
            read = dict(zip(missing, found, strict=True))
        return {path: known[path] if path in known else read[path] for path in paths}

    def take_written(self) -> list[tuple[str, WrittenFile]]:
        """The files appended since the last call (the fold hands them to its callbacks)."""
        written, self.written = self.written, []
        return written

    def reload(self, kind: str) -> Table:
        self.tables[kind] = self.catalog.load_table(self.tables[kind].name())
        return self.tables[kind]

    @staticmethod
    def source_keys(table: Table, row_filter: BooleanExpression | None = None) -> set[str]:
        if table.current_snapshot() is None:
            return set()
        keys: set[str] = set()
        scan = table.scan(row_filter=row_filter or AlwaysTrue(), selected_fields=(SOURCE,))
        for batch in scan.to_arrow_batch_reader():
            column = batch.column(0)
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            keys.update(k for k in pc.unique(column).to_pylist() if k is not None)
        return keys

    # --- guarded commits ------------------------------------------------------------------
    def check_writer(self, table: Table) -> None:
        fence = self.lease.fence
        if fence is not None:
            # A long fold or pass must not outlive the lease: extend it (or learn it is gone).
            self.lease.renew()
        if fence is None or not self.lease.held(self.margin):
            raise LeaseLost(self.lease.name, "expired or not held; not committing")
        snapshot = table.current_snapshot()
        if snapshot is not None:
            written = snapshot.summary.additional_properties.get(FENCE_PROPERTY)
            if written is not None and int(written) > fence:
                raise Fenced(
                    self.lease.name,
                    f"table {table.name()} was written by token {written} > {fence}",
                )

    def snapshot_properties(self, **extra: str) -> dict[str, str]:
        return {FENCE_PROPERTY: str(self.lease.fence), OWNER_PROPERTY: self.lease.owner, **extra}

    def append_new(
        self,
        kind: str,
        parts: Iterable[pa.Table],
        *,
        after_files: Callable[[], None] = lambda: None,
    ) -> pa.Table:
        """Append the rows of ``parts`` whose object the table does not hold yet; returns what
        was committed (no commit when nothing is new)."""
        # One table of all parts without copying them into one chunk: the data files' writer
        # sorts the rows (a copy) anyway.
        rows = pa.concat_tables(list(parts), promote_options="permissive")
        name = TABLE_NAMES[kind]
        keys = distinct_keys(rows.column(SOURCE))
        for attempt in range(MAX_ATTEMPTS):
            table = self.tables[kind] if attempt == 0 else self.reload(kind)
            if attempt > 0:
                # Someone committed since our load: read back which of our objects it holds.
                self.held[kind] |= self.source_keys(table, In(SOURCE, keys))
            fresh = rows
            already = keys & self.held[kind]
            if already:
                mask = pc.invert(pc.is_in(_plain(rows.column(SOURCE)), pa.array(sorted(already))))
                fresh = rows.filter(mask)
                metrics.ALREADY_FOLDED.labels(name).inc(rows.num_rows - fresh.num_rows)
            if fresh.num_rows == 0:
                return fresh
            self.check_writer(table)
            tx = table.transaction()
            files = write_data_files(table, kind, fresh, put=self.put)
            with tx.update_snapshot(self.snapshot_properties()).fast_append() as append:
                for written in files:
                    append.append_data_file(written.data_file)
            after_files()
            try:
                tx.commit_transaction()
            except CommitFailedException as exc:
                metrics.COMMIT_CONFLICTS.labels(name).inc()
                log.warning("%s: commit refused (%s); retrying from a fresh load", name, exc)
                continue
            metrics.COMMITS.labels(name, "append").inc()
            self.tables[kind] = table
            self.held[kind] |= keys - already
            for written in files:
                self.file_keys[kind][written.data_file.file_path] = written.source_keys
            self.written.extend((kind, written) for written in files)
            return fresh
        raise CommitFailedException(f"{name}: {MAX_ATTEMPTS} commits refused in a row")

    def overwrite(
        self, kind: str, rows: pa.Table, where: BooleanExpression, operation: str
    ) -> None:
        """Replace the rows ``where`` selects with ``rows`` in one snapshot (partition
        overwrite); a refused commit is retried from a fresh load."""
        name = TABLE_NAMES[kind]
        for attempt in range(MAX_ATTEMPTS):
            table = self.tables[kind] if attempt == 0 else self.reload(kind)
            self.check_writer(table)
            tx = table.transaction()
            tx.overwrite(
                rows,
                overwrite_filter=where,
                snapshot_properties=self.snapshot_properties(**{"etl.operation": operation}),
            )
            try:
                tx.commit_transaction()
            except CommitFailedException as exc:
                metrics.COMMIT_CONFLICTS.labels(name).inc()
                log.warning("%s: %s refused (%s); retrying", name, operation, exc)
                continue
            metrics.COMMITS.labels(name, operation).inc()
            self.tables[kind] = table
            return
        raise CommitFailedException(f"{name}: {MAX_ATTEMPTS} commits refused in a row")


def checkpoint_location(kind: str, table: Table) -> str:
    """Where the checkpoint of ``kind``'s source keys lives: beside the tables in their
    warehouse bucket, outside every table's location (orphan removal never sees it)."""
    bucket = urlparse(table.location()).netloc
    return f"s3://{bucket}/{CHECKPOINT_PREFIX}/{TABLE_NAMES[kind]}.parquet"


def _file_source_keys(table: Table, path: str) -> frozenset[str]:
    """The distinct ``source_key`` values of one data file (none in a file from before the
    column existed)."""
    with table.io.new_input(path).open() as stream:
        parquet = pq.ParquetFile(stream)
        if SOURCE not in parquet.schema_arrow.names:
            return frozenset()
        column = parquet.read(columns=[SOURCE], use_threads=False).column(0)
    return frozenset(distinct_keys(column))


def distinct_keys(column: pa.ChunkedArray) -> set[str]:
    """The distinct non-null values of a string column, plain or dictionary-encoded (taken
    from the dictionary, without decoding every row)."""
    keys: set[str] = set()
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary.take(pc.unique(chunk.indices.drop_null()))
        keys.update(k for k in pc.unique(chunk).to_pylist() if k is not None)
    return keys


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column

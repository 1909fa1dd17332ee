"""A fold's rows of one table as Parquet data files, one per (service, dt, hr) partition.

pyiceberg's ``Transaction.append`` works partition by partition: it filters each partition out
of the whole batch, casts it to the table's schema and writes it, one file after the other.
Here the rows are sorted once (``tables.in_write_order``, whose first keys are the partition
columns), cut into contiguous slices, and the slices are written side by side (Arrow writes and
uploads without the GIL). The typed rows' dictionary columns go to the Parquet writer as they
are (no cast to plain strings, no dictionary built again from the values), in the layout of
``tables.fold_writer_options`` (compaction's per-column encodings at the table's zstd level, no
Arrow schema stored, so every reader gets the tables' plain string types back). Each file
carries the Iceberg field ids and pyiceberg's column statistics (``tables.write_data_file``,
which writes compaction's files too, with what is the same for every file of a table made once:
``tables.file_layout``); the caller commits them with a fast append (``Committer.append_new``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, TableProperties
from pyiceberg.utils.properties import property_as_int

from stages.etl.tables import file_layout, fold_writer_options, in_write_order, write_data_file

PARTITION_COLUMNS = ("service", "dt", "hr")


@dataclass(frozen=True)
class WrittenFile:
    """One data file written for a commit: what to commit, the distinct ``source_key`` values
    of its rows, and the rows themselves (the table's columns, dictionary columns as typing
    made them), which the features step takes instead of reading the file back."""

    data_file: DataFile
    source_keys: frozenset[str]
    rows: pa.Table


SOURCE = "source_key"
# Files written at once: Arrow encodes and uploads outside the GIL. More threads cost more CPU
# per file on 2 cores (measured: 1-2 threads 3.3 us per record, 4 threads 5.5-8).
WRITERS = 2


def partition_slices(rows: pa.Table) -> list[tuple[tuple[str, date, int], int, int]]:
    """(partition, offset, length) of each run of ``rows`` sorted by the partition columns.

    The runs are found where a partition column's value changes from one row to the next (the
    order of Arrow's group-by output is not the order of the rows)."""
    count = rows.num_rows
    if count == 0:
        return []
    changed = None
    for name in PARTITION_COLUMNS:
        column = rows.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        column = column.combine_chunks()
        step = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, count - 1)), True)
        changed = step if changed is None else pc.or_(changed, step)
    assert changed is not None
    starts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist())]
    heads = rows.select(list(PARTITION_COLUMNS)).take(pa.array(starts, pa.int64()))
    values = zip(*(heads.column(name).to_pylist() for name in PARTITION_COLUMNS), strict=True)
    ends = [*starts[1:], count]
    return [
        ((service, dt, hr), start, end - start)
        for (service, dt, hr), start, end in zip(values, starts, ends, strict=True)
    ]


def write_data_files(
    table: Table,
    kind: str,
    rows: pa.Table,
    *,
    put: Callable[[str, pa.Buffer], None] | None = None,
) -> list[WrittenFile]:
    """Write ``rows`` (typed rows of ``kind``'s table, any column order, dictionary columns
    allowed) as one data file per partition; returns the files to commit. ``put`` uploads a
    file (``tables.write_data_file``)."""
    layout = file_layout(table)
    if layout.partition_columns != PARTITION_COLUMNS:
        raise ValueError(f"{table.name()}: partition spec is not {PARTITION_COLUMNS}")
    ordered = in_write_order(kind, rows)
    columns = []
    for f in layout.fields:
        if f.name not in ordered.column_names:
            columns.append(pa.nulls(ordered.num_rows, f.type))
            continue
        column = ordered.column(f.name)
        if column.type == f.type or (_is_string(f.type) and _is_string(column.type)):
            # Written as it is (``tables.fold_writer_options``): Parquet has one string type,
            # and a dictionary column goes in with its dictionary; read back as f.type.
            columns.append(column)
        else:
            columns.append(column.cast(f.type))
    data = pa.table(columns, names=[f.name for f in layout.fields])
    slices = partition_slices(data)
    if len(slices) != len({part for part, _, _ in slices}):
        raise ValueError("rows are not sorted by their partition columns")
    row_group_size = property_as_int(
        layout.properties,
        TableProperties.PARQUET_ROW_GROUP_LIMIT,
        TableProperties.PARQUET_ROW_GROUP_LIMIT_DEFAULT,
    )
    writer_options = fold_writer_options(layout, data.column_names)
    write_id = uuid.uuid4()

    def write_one(
        item: tuple[int, tuple[tuple[str, date, int], int, int]],
    ) -> WrittenFile:
        index, (values, offset, length) = item
        part = data.slice(offset, length)
        source = part.column(SOURCE)
        keys: frozenset[str] | None = None
        if pa.types.is_dictionary(source.type) and source.num_chunks == 1:
            # The fold's dictionary holds every object of the fold: each file's holds only its
            # own (they are its source keys), not a dictionary page of all of them.
            compacted = _only_used(source.chunk(0))
            part = part.set_column(part.schema.get_field_index(SOURCE), SOURCE, compacted)
            keys = frozenset(k for k in compacted.dictionary.to_pylist() if k is not None)
        data_file = write_data_file(
            table,
            part,
            values,
            name=f"00000-{index}-{write_id}.parquet",
            writer_options=writer_options,
            row_group_size=row_group_size,
            put=put,
            layout=layout,
        )
        if keys is None:
            keys = frozenset(k for k in pc.unique(source).to_pylist() if k is not None)
        return WrittenFile(data_file, keys, part)

    with ThreadPoolExecutor(WRITERS, thread_name_prefix="etl-write") as pool:
        return list(pool.map(write_one, enumerate(slices)))


def _only_used(column: pa.DictionaryArray) -> pa.DictionaryArray:
    """``column`` with a dictionary of the values its rows use, in the order of the old one."""
    used = pc.unique(column.indices.drop_null()).sort()
    if len(used) == len(column.dictionary):
        return column
    indices = pc.index_in(column.indices, value_set=used).cast(column.type.index_type)
    return pa.DictionaryArray.from_arrays(indices, column.dictionary.take(used))


def _is_string(typ: pa.DataType) -> bool:
    """A string type, plain or dictionary-encoded, of either offset width."""
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)

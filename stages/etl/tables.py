"""The curated lake's Iceberg tables and the Glue catalog that holds them.

One schema per table, one partition spec for all of them: identity on ``service``, ``dt`` and
``hr``, so a (service, hour) touched by new raw objects is rebuilt whole with a partition
overwrite, which makes re-runs idempotent and absorbs late objects. Every column is optional:
Iceberg refuses an Arrow column that may hold nulls for a required field, and the typing step
(``stages.etl.typing``) already decides what a record must carry; what it refuses goes to the
quarantine table with the reason.

Iceberg access goes through pyiceberg's catalog API only: the same code serves the emulator (which
honours Glue's ``VersionId`` like AWS, see ``stages.emulator.glue``) and AWS Glue.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
from pyiceberg.io.pyarrow import (
    StatisticsCollector,
    _get_parquet_writer_kwargs,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
    schema_to_pyarrow,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionField, PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.locations import LocationProvider
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    NestedField,
    StringType,
    TimestamptzType,
)

from stages.common.lakehouse import (
    FEATURES_BUCKET,
    NAMESPACE,
    PROCESSED_BUCKET,
    open_catalog,
)

__all__ = ["FEATURES_BUCKET", "NAMESPACE", "PROCESSED_BUCKET", "open_catalog"]

_COMMON_HEAD: tuple[tuple[str, object], ...] = (
    ("event_id", StringType()),
    ("timestamp", TimestamptzType()),
    ("service", StringType()),
    ("kind", StringType()),
    ("host", StringType()),
    ("source", StringType()),
    ("trace_id", StringType()),
    ("span_id", StringType()),
    ("parent_span_id", StringType()),
)
_LABELS: tuple[tuple[str, object], ...] = (
    ("anomaly_score", DoubleType()),
    ("is_anomaly", BooleanType()),
    ("scenario_id", StringType()),
    ("anomaly_type", StringType()),
)
_ATTRIBUTES: tuple[tuple[str, object], ...] = (("attributes", StringType()),)
_PARTITION: tuple[tuple[str, object], ...] = (("dt", DateType()), ("hr", IntegerType()))

# Columns of each kind beyond the common ones, promoted attributes included.
KIND_COLUMNS: dict[str, tuple[tuple[str, object], ...]] = {
    "log": (
        ("level", StringType()),
        ("message", StringType()),
        ("log_type", StringType()),
        ("category", StringType()),
        ("http_status_code", IntegerType()),
        ("duration_ms", DoubleType()),
    ),
    "metric": (
        ("metric_name", StringType()),
        ("value", DoubleType()),
        ("unit", StringType()),
        ("metric_baseline", DoubleType()),
    ),
    "apm": (
        ("name", StringType()),
        ("duration_ms", DoubleType()),
        ("status", StringType()),
        ("http_status_code", IntegerType()),
        ("self_time_ms", DoubleType()),
        ("depth", IntegerType()),
    ),
}

QUARANTINE_COLUMNS: tuple[tuple[str, object], ...] = (
    ("source_key", StringType()),
    ("line_number", IntegerType()),
    ("reason", StringType()),
    ("raw_line", StringType()),
    ("kind", StringType()),
    ("service", StringType()),
    *_PARTITION,
)

# pyiceberg's Parquet writer reads these table properties on every write it makes (appends,
# overwrites; compaction writes its own files, below), so they are set when a table is created.
# Measured on the synthesis generator's records (benchmarks/etl.py, docs/performance.md): zstd
# level 1 made smaller files than levels 2 and 3 with less CPU (level 9 and above save bytes only
# at three times the CPU and more); a
# dictionary page limit of 16 KiB still holds every low-cardinality column (service, host, level,
# log type, metric name, the anomaly score's ~1,000 values) while the unique ids (event, trace,
# span) stop trying a dictionary after 16 KiB instead of 2 MiB, which saves 3-7 bytes per record.
WRITE_PROPERTIES: dict[str, str] = {
    "write.parquet.compression-codec": "zstd",
    "write.parquet.compression-level": "1",
    "write.parquet.dict-size-bytes": str(16 * 1024),
}

# Rows are written in this order within a file: records of one log type (metric, operation) and
# host side by side make the messages and attributes repeat within a page, which zstd turns into
# 8-10 % fewer bytes per record than arrival order. The partition columns come first, so one
# sort serves a batch that spans several partitions.
WRITE_ORDER: dict[str, tuple[str, ...]] = {
    "log": ("service", "dt", "hr", "log_type", "host", "timestamp"),
    "metric": ("service", "dt", "hr", "metric_name", "host", "timestamp"),
    "apm": ("service", "dt", "hr", "name", "host", "timestamp"),
    "quarantine": ("service", "dt", "hr", "source_key", "line_number"),
}

# The Parquet layout of the files the ETL writes itself (compaction of a closed hour; any other
# writer of a data file uses ``parquet_writer_options`` / ``write_data_file`` too). pyiceberg's
# own writer takes one codec, level and dictionary limit for all columns; these differ per
# column. Measured on an hour at 1,000 records/s (benchmarks/etl.py --records 3600000,
# docs/performance.md): per record, the random ids are most of the bytes and near their entropy.
#
# - A dictionary only where a column repeats within a file: the low-cardinality strings and
#   numbers (the anomaly score, span durations), and ``source_key`` (a few thousand raw objects
#   an hour, so its dictionary page must hold ~1 MiB of keys: PARQUET_DICTIONARY_PAGE_BYTES).
#   A dictionary on the ids, ``message``, ``attributes`` or a metric's ``value`` costs bytes.
# - DELTA_LENGTH_BYTE_ARRAY for the ids: the lengths (all the same) cost nothing and zstd sees
#   the hex characters alone, 1.9 bytes per id less than PLAIN.
# - DELTA_BINARY_PACKED for the timestamp, in order within each series of the sort.
# - Floats stay PLAIN: they carry few decimals, which zstd finds; BYTE_STREAM_SPLIT cost 1-3
#   bytes per float column.
# - zstd level 1 for the ids (higher levels made them larger), a higher level for the rest:
#   compaction is off the fold's path, and level 9 saves bytes on timestamps, values, messages
#   and attributes for a few times level 1's CPU on those columns.
PARQUET_DICTIONARY_COLUMNS = frozenset(
    {
        "service",
        "kind",
        "host",
        "source",
        "level",
        "log_type",
        "category",
        "metric_name",
        "unit",
        "name",
        "status",
        "scenario_id",
        "anomaly_type",
        "anomaly_score",
        "metric_baseline",
        "duration_ms",
        "self_time_ms",
        "http_status_code",
        "depth",
        "dt",
        "hr",
        "source_key",
    }
)
PARQUET_ID_COLUMNS = frozenset({"event_id", "trace_id", "span_id", "parent_span_id"})
PARQUET_COLUMN_ENCODING: dict[str, str] = {
    **dict.fromkeys(sorted(PARQUET_ID_COLUMNS), "DELTA_LENGTH_BYTE_ARRAY"),
    "timestamp": "DELTA_BINARY_PACKED",
}
PARQUET_ID_LEVEL = 1
PARQUET_LEVEL = 9
PARQUET_DICTIONARY_PAGE_BYTES = 4 * 1024 * 1024
PARQUET_DATA_PAGE_BYTES = 1024 * 1024
# pyiceberg's default (write.parquet.row-group-limit): an hour of a service at 1,000 records/s
# is one row group.
PARQUET_ROW_GROUP_ROWS = 1024 * 1024


def parquet_writer_options(columns: list[str]) -> dict[str, Any]:
    """Keyword arguments of ``pyarrow.parquet.ParquetWriter`` for a data file of ``columns``
    (a data table's or the quarantine table's) in the tables' Parquet layout."""
    dictionary = [name for name in columns if name in PARQUET_DICTIONARY_COLUMNS]
    return {
        "compression": "zstd",
        "compression_level": {
            name: PARQUET_ID_LEVEL if name in PARQUET_ID_COLUMNS else PARQUET_LEVEL
            for name in columns
        },
        "use_dictionary": dictionary,
        "column_encoding": {
            name: encoding
            for name, encoding in PARQUET_COLUMN_ENCODING.items()
            if name in columns and name not in dictionary
        },
        "dictionary_pagesize_limit": PARQUET_DICTIONARY_PAGE_BYTES,
        "data_page_size": PARQUET_DATA_PAGE_BYTES,
        # pyiceberg's page row limit (write.parquet.page-row-limit), as in its own files.
        "write_batch_size": 20_000,
        "store_decimal_as_integer": True,
    }


TABLE_NAMES: dict[str, str] = {
    "log": "logs",
    "metric": "metrics",
    "apm": "apm",
    "quarantine": "quarantine",
}


def column_names(kind: str) -> list[str]:
    """The columns of ``kind``'s table (or ``quarantine``), in table order."""
    return [name for name, _ in _columns(kind)]


def in_write_order(kind: str, rows: pa.Table) -> pa.Table:
    """``rows`` of ``kind``'s table sorted as its files are best written (``WRITE_ORDER``);
    dictionary columns sort by their values, not their codes."""
    keys = [(name, "ascending", "at_end") for name in WRITE_ORDER[kind]]
    return rows.take(pc.sort_indices(_sort_keys(rows, [name for name, _, _ in keys]), keys))


def _sort_keys(rows: pa.Table, names: list[str]) -> pa.Table:
    """The columns ``names`` of ``rows`` as a table that sorts like their values: a dictionary
    column becomes the rank of each row's value among its dictionary's values (an integer
    sort, the same order as the strings' and without decoding them)."""
    dictionaries = [name for name in names if pa.types.is_dictionary(rows.schema.field(name).type)]
    # One dictionary for all chunks of a column, so that one ranking serves them all.
    unified = rows.select(dictionaries).unify_dictionaries() if dictionaries else None
    columns = {}
    for name in names:
        if unified is None or name not in dictionaries:
            columns[name] = rows.column(name)
            continue
        column = unified.column(name)
        if column.num_chunks == 0:
            columns[name] = column.cast(column.type.value_type)
            continue
        dictionary = column.chunk(0).dictionary
        # Dense ranks keep equal values equal; a null value (in the dictionary or as a null
        # index) stays null, so it sorts at the end as it would as a string.
        ranks = pc.if_else(
            pc.is_null(dictionary),
            pa.scalar(None, pa.uint32()),
            pc.rank(dictionary, sort_keys="ascending", tiebreaker="dense").cast(pa.uint32()),
        )
        columns[name] = pa.chunked_array(
            [ranks.take(chunk.indices) for chunk in column.chunks], pa.uint32()
        )
    return pa.table(columns)


def _columns(kind: str) -> tuple[tuple[str, object], ...]:
    if kind == "quarantine":
        return QUARANTINE_COLUMNS
    return _COMMON_HEAD + KIND_COLUMNS[kind] + _LABELS + _ATTRIBUTES + _PARTITION


# The raw object (key in its bucket) each row of a data table was typed from, written by the ETL
# service: which objects a table holds moves in the same commit as their rows. The typing step
# does not produce it (the quarantine table's own ``source_key`` does come from there).
LINEAGE_COLUMNS: tuple[tuple[str, object], ...] = (("source_key", StringType()),)


def table_columns(kind: str) -> tuple[tuple[str, object], ...]:
    """Every column of ``kind``'s table: the typed ones, then (data tables) the lineage."""
    return _columns(kind) if kind == "quarantine" else _columns(kind) + LINEAGE_COLUMNS


def schema(kind: str) -> Schema:
    return Schema(
        *(
            NestedField(field_id=i, name=name, field_type=typ, required=False)  # type: ignore[arg-type]
            for i, (name, typ) in enumerate(table_columns(kind), start=1)
        )
    )


def partition_spec(table_schema: Schema) -> PartitionSpec:
    return PartitionSpec(
        *(
            PartitionField(
                source_id=table_schema.find_field(name).field_id,
                field_id=1000 + i,
                transform=IdentityTransform(),
                name=name,
            )
            for i, name in enumerate(("service", "dt", "hr"))
        )
    )


@dataclass(frozen=True)
class TableSpec:
    kind: str
    identifier: str
    location: str


def table_specs() -> list[TableSpec]:
    return [
        TableSpec(kind, f"{NAMESPACE}.{name}", f"s3://{PROCESSED_BUCKET}/{NAMESPACE}/{name}")
        for kind, name in TABLE_NAMES.items()
    ]


def ensure_tables(catalog: GlueCatalog) -> dict[str, Table]:
    """Create the namespace and every table unless they exist; returns them by kind.

    Safe to run from several processes at once: whoever loses a create race loads the winner's.
    """
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(NAMESPACE, {"location": f"s3://{PROCESSED_BUCKET}/{NAMESPACE}"})
    tables: dict[str, Table] = {}
    for spec in table_specs():
        table_schema = schema(spec.kind)
        try:
            tables[spec.kind] = catalog.create_table(
                spec.identifier,
                schema=table_schema,
                location=spec.location,
                partition_spec=partition_spec(table_schema),
                properties=WRITE_PROPERTIES,
            )
        except TableAlreadyExistsError:
            tables[spec.kind] = catalog.load_table(spec.identifier)
    return tables


@dataclass(frozen=True)
class FileLayout:
    """What every data file of a table shares while its schema, partition spec, location and
    properties stay the same: the Iceberg read types with field ids, pyiceberg's statistics
    plan and column mapping, the partition spec and the location provider. pyiceberg works
    them out again for every file it writes (~1 ms of CPU); the fold makes them once."""

    schema: Schema
    spec: PartitionSpec
    spec_id: int
    fields: tuple[pa.Field, ...]
    # The column each partition field is the identity of, in the spec's order.
    partition_columns: tuple[str, ...]
    stats_columns: dict[int, StatisticsCollector]
    column_mapping: dict[str, int]
    locations: LocationProvider
    properties: dict[str, str]

    def partition_key(self, partition: tuple[str, date, int]) -> PartitionKey:
        values = dict(zip(("service", "dt", "hr"), partition, strict=True))
        return PartitionKey(
            field_values=[
                PartitionFieldValue(field, values[column])
                for field, column in zip(self.spec.fields, self.partition_columns, strict=True)
            ],
            partition_spec=self.spec,
            schema=self.schema,
        )


_LAYOUTS: dict[tuple[Any, ...], FileLayout] = {}


def file_layout(table: Table) -> FileLayout:
    """``table``'s ``FileLayout``, made once per table schema, spec, location and properties
    (a commit that changes none of them keeps it)."""
    metadata = table.metadata
    key = (
        str(metadata.table_uuid),
        metadata.current_schema_id,
        metadata.default_spec_id,
        metadata.location,
        tuple(sorted(metadata.properties.items())),
    )
    layout = _LAYOUTS.get(key)
    if layout is None:
        table_schema = metadata.schema()
        spec = metadata.spec()
        layout = FileLayout(
            schema=table_schema,
            spec=spec,
            spec_id=metadata.default_spec_id,
            fields=tuple(schema_to_pyarrow(table_schema, include_field_ids=True)),
            partition_columns=tuple(
                table_schema.find_field(field.source_id).name for field in spec.fields
            ),
            stats_columns=compute_statistics_plan(table_schema, metadata.properties),
            column_mapping=parquet_path_to_id_mapping(table_schema),
            locations=table.location_provider(),
            properties=dict(metadata.properties),
        )
        if len(_LAYOUTS) >= 64:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def fold_writer_options(layout: FileLayout, columns: list[str]) -> dict[str, Any]:
    """``pyarrow.parquet.ParquetWriter`` options of the fold's data files: compaction's
    per-column layout (``parquet_writer_options``: a dictionary only on the columns that repeat,
    delta encodings for the ids and the timestamp) with the table's own codec and level
    (``WRITE_PROPERTIES``: zstd level 1, the fold's files are rewritten when their hour is
    compacted), and no Arrow schema stored in the file. The dictionary columns of the typed rows
    go to the Parquet writer as they are, which writes their dictionaries and codes without
    hashing every value again; without a stored Arrow schema every reader (pyiceberg, DuckDB,
    compaction) reads them back as the tables' plain strings, as from any Iceberg writer."""
    table = _get_parquet_writer_kwargs(layout.properties)
    return {
        **parquet_writer_options(columns),
        "compression": table["compression"],
        "compression_level": table["compression_level"],
        "write_batch_size": table["write_batch_size"],
        "store_schema": False,
    }


COMPACTED_PREFIX = "compacted-"


def write_data_file(
    table: Table,
    rows: pa.Table,
    partition: tuple[str, date, int],
    *,
    name: str | None = None,
    writer_options: dict[str, Any] | None = None,
    row_group_size: int = PARQUET_ROW_GROUP_ROWS,
    put: Callable[[str, pa.Buffer], None] | None = None,
    layout: FileLayout | None = None,
) -> DataFile:
    """Write ``rows`` (of one (service, dt, hr) partition, in the order given) as one Parquet
    file of ``table`` in the tables' Parquet layout, and describe it for a commit.

    The file carries the Iceberg field ids in its Parquet schema (readers map columns by id) and
    the column statistics pyiceberg would write, so the manifests can skip it by timestamp like
    any file pyiceberg writes. Nothing is committed here: the file is an orphan until a snapshot
    references it (orphan removal deletes it if none ever does).

    Compaction writes with the defaults (compaction's layout, a ``compacted-`` name); the fold
    passes ``fold_writer_options``, its file name and the table's ``file_layout`` (made once
    for all its files, ``datafiles.py``).

    With ``put`` (``put(s3_url, data)``) the file is written in memory and uploaded in one
    request by ``put``; without it, through the table's FileIO (pyarrow's S3 filesystem).
    """
    layout = file_layout(table) if layout is None else layout
    # Each column keeps the Arrow type it has in ``rows`` (a dictionary stays a dictionary):
    # with the Arrow schema stored in the file (compaction's files), it is what a reader gets
    # back, and a scan over this file and the fold's files can only join them when their types
    # agree; the fold stores none (``fold_writer_options``), so its files read back in the
    # tables' plain types whatever the Arrow types written.
    fields = [
        pa.field(f.name, rows.schema.field(f.name).type, nullable=True, metadata=f.metadata)
        for f in layout.fields
    ]
    arrow_schema = pa.schema(fields)
    data = pa.Table.from_arrays([rows.column(f.name) for f in fields], schema=arrow_schema)
    key = layout.partition_key(partition)
    path = layout.locations.new_data_location(
        name or f"{COMPACTED_PREFIX}{uuid.uuid4()}.parquet", key
    )
    options = (
        parquet_writer_options(arrow_schema.names) if writer_options is None else writer_options
    )
    if put is not None:
        buffer = pa.BufferOutputStream()
        writer = pq.ParquetWriter(buffer, schema=arrow_schema, **options)
        with writer:
            writer.write_table(data, row_group_size=row_group_size)
        body = buffer.getvalue()
        put(path, body)
        size = body.size
    else:
        output = table.io.new_output(path)
        with output.create(overwrite=True) as stream:
            writer = pq.ParquetWriter(stream, schema=arrow_schema, **options)
            with writer:
                writer.write_table(data, row_group_size=row_group_size)
            # The stream's position is the file's size; asking S3 for it would cost a request.
            size = stream.tell()
    statistics = data_file_statistics_from_parquet_metadata(
        parquet_metadata=writer.writer.metadata,
        stats_columns=layout.stats_columns,
        parquet_column_mapping=layout.column_mapping,
    )
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=key.partition,
        file_size_in_bytes=size,
        sort_order_id=None,
        spec_id=layout.spec_id,
        equality_ids=None,
        key_metadata=None,
        **statistics.to_serialized_dict(),
    )

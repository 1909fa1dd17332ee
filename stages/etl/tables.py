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
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
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

# pyiceberg's Parquet writer reads these table properties on every write (appends, overwrites,
# compaction), so they are set when a table is created. Measured on the synthesis generator's
# records (benchmarks/etl.py, docs/performance.md): zstd level 1 made smaller files than levels 2
# and 3 with less CPU (level 9 and above save bytes only at three times the CPU and more); a
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
    plain = pa.table(
        {
            name: pc.cast(rows[name], rows.schema.field(name).type.value_type)
            if pa.types.is_dictionary(rows.schema.field(name).type)
            else rows[name]
            for name, _, _ in keys
        }
    )
    return rows.take(pc.sort_indices(plain, sort_keys=keys))


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

"""``telemetry.anomalies``: every event transition (open, update, close) as one row of an Iceberg
table in the Glue catalog, data under ``s3://<models bucket>/telemetry/anomalies``.

One row per (``event_id``, ``action``); the rows come from the alert outbox (``alerts.py``), so
a transition reaches the table once it is checkpointed, and an append that fails is retried from
the outbox like an alert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType

from stages.common.lakehouse import NAMESPACE, PROCESSED_BUCKET

ANOMALIES_TABLE = f"{NAMESPACE}.anomalies"

_TS = pa.timestamp("us", tz="UTC")
_COLUMNS: tuple[tuple[str, Any, pa.DataType], ...] = (
    ("event_id", StringType(), pa.string()),
    ("action", StringType(), pa.string()),
    ("dedup_id", StringType(), pa.string()),
    ("service", StringType(), pa.string()),
    ("state", StringType(), pa.string()),
    ("signals", StringType(), pa.string()),
    ("voters", StringType(), pa.string()),
    ("severity", StringType(), pa.string()),
    ("peak_score", DoubleType(), pa.float64()),
    ("points", LongType(), pa.int64()),
    ("start", TimestamptzType(), _TS),
    ("end", TimestamptzType(), _TS),
    ("peak_at", TimestamptzType(), _TS),
    ("recorded_at", TimestamptzType(), _TS),
)
ARROW_SCHEMA = pa.schema([pa.field(name, typ) for name, _, typ in _COLUMNS])


def location(models_bucket: str) -> str:
    return f"s3://{models_bucket}/{NAMESPACE}/anomalies"


def ensure_anomalies_table(catalog: Catalog, models_bucket: str) -> Table:
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(NAMESPACE, {"location": f"s3://{PROCESSED_BUCKET}/{NAMESPACE}"})
    schema = Schema(
        *(
            NestedField(field_id=i, name=name, field_type=typ, required=False)
            for i, (name, typ, _) in enumerate(_COLUMNS, start=1)
        )
    )
    try:
        return catalog.create_table(
            ANOMALIES_TABLE,
            schema=schema,
            location=location(models_bucket),
            properties={"write.parquet.compression-codec": "zstd"},
        )
    except TableAlreadyExistsError:
        return catalog.load_table(ANOMALIES_TABLE)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def rows(messages: Iterable[dict[str, Any]]) -> pa.Table:
    """Alert messages (``alerts.message``) -> rows of ``telemetry.anomalies``."""
    now = datetime.now(UTC)
    columns: dict[str, list[Any]] = {name: [] for name, _, _ in _COLUMNS}
    for message in messages:
        event = message["event"]
        columns["event_id"].append(event["id"])
        columns["action"].append(message["action"])
        columns["dedup_id"].append(message["dedup_id"])
        columns["service"].append(event["service"])
        columns["state"].append(event["state"])
        columns["signals"].append(",".join(event["signals"]))
        columns["voters"].append(",".join(event["voters"]))
        columns["severity"].append(event["severity"])
        columns["peak_score"].append(float(event["peak_score"]))
        columns["points"].append(int(event["points"]))
        columns["start"].append(_when(event["start"]))
        columns["end"].append(_when(event["end"]))
        columns["peak_at"].append(_when(event["peak_at"]))
        columns["recorded_at"].append(now)
    return pa.table(columns, schema=ARROW_SCHEMA)

"""The curated lake's Iceberg tables as the dashboard shows them, from Iceberg metadata only.

Rows, data files and bytes come from the current snapshot's summary (``total-records``,
``total-data-files``, ``total-files-size``); the last commit is that snapshot's time; freshness is
the newest value of the table's event-time column, the largest upper bound the manifests record
for it (no data file is opened). Reading the manifests is the one cost that grows with the table,
so it is done once per snapshot: a table nobody has committed to since the last refresh costs
one Glue call and one metadata file.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    NoSuchNamespaceError,
    NoSuchPropertyException,
    NoSuchTableError,
    ValidationError,
)
from pyiceberg.table import Table
from pyiceberg.types import TimestampType, TimestamptzType

from stages.common.lakehouse import NAMESPACE

QUARANTINE = "quarantine"
# A table whose metadata cannot be read: the file is missing or unreadable (OSError), its Glue
# entry lacks a property (NoSuchPropertyException), or the file is not Iceberg metadata
# (pyiceberg's ValidationError, or a ValueError). It is shown with the reason; it hides no other
# table.
UNREADABLE = (OSError, NoSuchPropertyException, ValidationError, ValueError)
# The column whose newest value says how fresh a table is, in order of preference: records carry
# ``timestamp``; an aggregate table (features) its bucket's start; the anomaly events table
# (``telemetry.anomalies``) the time each event transition was recorded.
EVENT_TIME_COLUMNS = ("timestamp", "bucket_start", "bucket", "window_start", "recorded_at")


def _event_time_column(table: Table) -> str | None:
    fields = {f.name: f for f in table.schema().fields}
    for name in EVENT_TIME_COLUMNS:
        field = fields.get(name)
        if field is not None and isinstance(field.field_type, (TimestamptzType, TimestampType)):
            return name
    return None


def _newest(table: Table, column: str) -> datetime | None:
    files = table.inspect.files(table.current_snapshot().snapshot_id)  # type: ignore[union-attr]
    if files.num_rows == 0:
        return None
    bounds = files.column("readable_metrics").combine_chunks().field(column).field("upper_bound")
    values = [v for v in bounds.to_pylist() if v is not None]
    if not values:
        return None
    newest = max(values)
    return newest if newest.tzinfo else newest.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int(summary: dict[str, str], key: str) -> int:
    try:
        return int(summary.get(key, 0))
    except ValueError:
        return 0


class TableStats:
    """Per-table figures from metadata, cached per snapshot id (manifests never change)."""

    def __init__(self, catalog: Catalog, namespace: str = NAMESPACE) -> None:
        self.catalog = catalog
        self.namespace = namespace
        self._newest: dict[tuple[str, int], datetime | None] = {}
        self._lock = threading.Lock()

    def table_names(self) -> list[str]:
        try:
            return sorted(name for _, name in self.catalog.list_tables(self.namespace))
        except NoSuchNamespaceError:
            return []

    def describe(self, name: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        # A tuple: a name may hold a dot, which a dotted identifier would split on.
        table = self.catalog.load_table((self.namespace, name))
        snapshot = table.current_snapshot()
        view = self._blank(name)
        view.update(
            location=table.location(),
            format_version=table.metadata.format_version,
            partitioned_by=[f.name for f in table.spec().fields],
            snapshots=len(table.metadata.snapshots),
            event_time_column=_event_time_column(table),
        )
        if snapshot is None:
            return view
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        rows = _int(summary, "total-records")
        files = _int(summary, "total-data-files")
        size = _int(summary, "total-files-size")
        committed = snapshot.timestamp_ms / 1000
        view.update(
            snapshot_id=snapshot.snapshot_id,
            operation=snapshot.summary.operation.value if snapshot.summary else None,
            rows=rows,
            data_files=files,
            total_bytes=size,
            avg_file_bytes=size // files if files else None,
            last_commit=_iso(datetime.fromtimestamp(committed, UTC)),
            last_commit_age_seconds=round(max(0.0, now - committed), 3),
        )
        column = view["event_time_column"]
        if column is not None:
            key = (view["identifier"], snapshot.snapshot_id)
            with self._lock:
                cached = key in self._newest
                newest = self._newest.get(key)
            if not cached:
                newest = _newest(table, column)
                with self._lock:
                    self._newest[key] = newest
            if newest is not None:
                view["newest"] = _iso(newest)
                view["freshness_seconds"] = round(now - newest.timestamp(), 3)
        return view

    def unreadable(self, name: str, exc: Exception) -> dict[str, Any]:
        """The view of a table whose metadata cannot be read: blank figures and the reason."""
        reason = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        return self._blank(name, error=reason[:1000])

    def _blank(self, name: str, error: str | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "identifier": f"{self.namespace}.{name}",
            "location": "",
            "format_version": 0,
            "partitioned_by": [],
            "snapshots": 0,
            "snapshot_id": None,
            "operation": None,
            "rows": 0,
            "data_files": 0,
            "total_bytes": 0,
            "avg_file_bytes": None,
            "last_commit": None,
            "last_commit_age_seconds": None,
            "event_time_column": None,
            "newest": None,
            "freshness_seconds": None,
            "error": error,
        }

    def overview(self) -> dict[str, Any]:
        now = time.time()
        tables = []
        for name in self.table_names():
            try:
                tables.append(self.describe(name, now))
            except NoSuchTableError:
                continue  # dropped between the listing and the load
            except UNREADABLE as exc:
                # One unreadable metadata file must not hide the other tables.
                tables.append(self.unreadable(name, exc))
        quarantined = next((t["rows"] for t in tables if t["name"] == QUARANTINE), None)
        return {
            "namespace": self.namespace,
            "checked_at": now,
            "quarantined_rows": quarantined,
            "tables": tables,
        }

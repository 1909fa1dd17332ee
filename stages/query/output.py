"""A query result as an aligned text table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import orjson

if TYPE_CHECKING:
    from stages.query.engine import Result

NULL = "NULL"
# DuckDB type names whose values are right-aligned.
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
_NUMERIC = (*_NUMERIC, *(f"U{name}" for name in _NUMERIC[:5]))


def _text(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _cell(value: Any) -> str:
    # One line per row: a message with a newline or tab must not break the columns.
    return _text(value).replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def write_table(result: Result, out: TextIO) -> None:
    if not result.columns:
        return
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [
        max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(result.columns)
    ]
    right = [t.startswith(_NUMERIC) for t in result.types]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out.write(line(result.columns) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
    count = len(result.rows)
    out.write(f"({count} row{'' if count == 1 else 's'})\n")


def write_csv(result: Result, out: TextIO) -> None:
    if not result.columns:
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if v is None else _text(v) for v in row])


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    # Intervals and any other value without a JSON form: its text.
    return str(value)


def write_json(result: Result, out: TextIO) -> None:
    """A JSON array of objects, one per row (DuckDB CLI's ``-json`` shape)."""
    rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    out.write(
        orjson.dumps(
            rows, default=_json_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
        ).decode()
        + "\n"
    )


WRITERS: dict[str, Callable[[Result, TextIO], None]] = {
    "table": write_table,
    "csv": write_csv,
    "json": write_json,
}


def render(result: Result, fmt: str) -> str:
    buffer = io.StringIO()
    WRITERS[fmt](result, buffer)
    return buffer.getvalue()

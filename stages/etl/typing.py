"""Raw JSONL (the consumer's lake objects) -> one typed Arrow table per kind, plus quarantine.

Every non-blank line ends up in exactly one output: the table of its kind, or the quarantine
table with the reason and the raw line. Nothing is dropped: a line that cannot be typed is a
quarantined row, and a quarantined row is counted like any other.

Lines are parsed with orjson (C) and the columns are built by Arrow. Each kind's records take a
fast path first: Arrow pulls every top-level field out of the parsed dicts in one conversion
that refuses any value of the wrong type, and the checks (required fields, the timestamp's form
and range, the service name) are whole-column Arrow operations; Python only touches each record
to check its keys and to write its ``attributes`` back as JSON text. When the fast path refuses
a batch it is split into blocks, each tried again on its own, and only a refused block is checked
record by record (the careful path), so every bad line gets its own reason without slowing down
the good ones around it. Both paths give the same rows for the records they accept.

The Ingestion Interface already validated every record against ``stages.common.records.Record``;
this step re-checks what the typed columns depend on (kind, known fields, types, the timestamp,
the service name that becomes a partition value) and does not repeat the finer rules (level
names, id hex).

Values of ``attributes`` keep their JSON form in the ``attributes`` column (a JSON object text);
the frequent keys are also promoted to typed columns, which are null when the attribute is absent
or not of the column's type (the value is still in ``attributes``).
"""

from __future__ import annotations

import gc
import gzip
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from stages.common.records import SERVICE_PATTERN, format_timestamp
from stages.etl.tables import column_names

KINDS = ("log", "metric", "apm")

# Timestamps outside these years are clock faults, not telemetry: each would open a partition
# decades away from all the others.
MIN_YEAR = 2000
MAX_YEAR = 2099

_CANONICAL_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
)
_SERVICE = re.compile(SERVICE_PATTERN)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

_STR = (str,)
_NUM = (int, float)
_BOOL = (bool,)

_COMMON_FIELDS: dict[str, tuple[type, ...]] = {
    "event_id": _STR,
    "host": _STR,
    "source": _STR,
    "trace_id": _STR,
    "span_id": _STR,
    "parent_span_id": _STR,
    "anomaly_score": _NUM,
    "is_anomaly": _BOOL,
    "scenario_id": _STR,
    "anomaly_type": _STR,
}
_KIND_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "log": {"level": _STR, "message": _STR, "log_type": _STR, "category": _STR},
    "metric": {"metric_name": _STR, "value": _NUM, "unit": _STR},
    "apm": {"name": _STR, "duration_ms": _NUM, "status": _STR},
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "log": ("level", "message"),
    "metric": ("metric_name", "value", "unit"),
    "apm": ("trace_id", "span_id", "name", "duration_ms", "status"),
}
# (column, attribute key, Arrow type) promoted out of ``attributes`` per kind.
PROMOTED: dict[str, tuple[tuple[str, str, pa.DataType], ...]] = {
    "log": (
        ("http_status_code", "http.status_code", pa.int32()),
        ("duration_ms", "duration_ms", pa.float64()),
    ),
    "metric": (("metric_baseline", "metric.baseline", pa.float64()),),
    "apm": (
        ("http_status_code", "http.status_code", pa.int32()),
        ("self_time_ms", "self_time_ms", pa.float64()),
        ("depth", "depth", pa.int32()),
    ),
}
# Low-cardinality strings: stored once per Parquet page, compared as integers.
_DICTIONARY = frozenset(
    {
        "service",
        "kind",
        "level",
        "log_type",
        "category",
        "source",
        "metric_name",
        "unit",
        "status",
        "anomaly_type",
    }
)
_FIELD_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    kind: {**_COMMON_FIELDS, **fields} for kind, fields in _KIND_FIELDS.items()
}
_ALLOWED_KEYS: dict[str, frozenset[str]] = {
    kind: frozenset({"timestamp", "kind", "service", "attributes", *types})
    for kind, types in _FIELD_TYPES.items()
}
_DOUBLE_COLUMNS = frozenset({"anomaly_score", "value", "duration_ms"})

QUARANTINE_SCHEMA = pa.schema(
    [
        ("source_key", pa.string()),
        ("line_number", pa.int32()),
        ("reason", pa.string()),
        ("raw_line", pa.string()),
        ("kind", pa.string()),
        ("service", pa.string()),
        ("dt", pa.date32()),
        ("hr", pa.int32()),
    ]
)


def arrow_schema(kind: str) -> pa.Schema:
    """The Arrow schema :func:`type_jsonl` produces for ``kind`` (its Iceberg table's columns)."""
    promoted = {name: typ for name, _, typ in PROMOTED[kind]}
    fields = []
    for name in column_names(kind):
        if name == "timestamp":
            typ: pa.DataType = pa.timestamp("us", tz="UTC")
        elif name in promoted:
            typ = promoted[name]
        elif name in _DOUBLE_COLUMNS:
            typ = pa.float64()
        elif name == "is_anomaly":
            typ = pa.bool_()
        elif name == "dt":
            typ = pa.date32()
        elif name == "hr":
            typ = pa.int32()
        else:
            typ = pa.string()
        if name in _DICTIONARY:
            typ = pa.dictionary(pa.int32(), typ)
        fields.append(pa.field(name, typ))
    return pa.schema(fields)


ARROW_SCHEMAS: dict[str, pa.Schema] = {kind: arrow_schema(kind) for kind in KINDS}


@dataclass(frozen=True)
class RawPartition:
    """Where a raw object lives (its service and UTC hour), given to its quarantined rows."""

    service: str
    dt: date
    hr: int


@dataclass
class Typed:
    tables: dict[str, pa.Table]
    quarantine: pa.Table
    lines: int = 0

    @property
    def typed(self) -> int:
        return sum(t.num_rows for t in self.tables.values())


@dataclass
class _Quarantine:
    source_key: str
    partition: RawPartition | None
    rows: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in QUARANTINE_SCHEMA.names}
    )

    def add(self, line_number: int, reason: str, line: bytes, obj: Any = None) -> None:
        record = obj if isinstance(obj, dict) else {}
        kind, service = record.get("kind"), record.get("service")
        rows = self.rows
        rows["source_key"].append(self.source_key)
        rows["line_number"].append(line_number)
        rows["reason"].append(reason)
        rows["raw_line"].append(line.decode("utf-8", errors="replace"))
        rows["kind"].append(kind if isinstance(kind, str) else None)
        if self.partition is not None:
            rows["service"].append(self.partition.service)
            rows["dt"].append(self.partition.dt)
            rows["hr"].append(self.partition.hr)
        else:
            rows["service"].append(service if isinstance(service, str) else None)
            rows["dt"].append(None)
            rows["hr"].append(None)

    def table(self) -> pa.Table:
        return pa.table(self.rows, schema=QUARANTINE_SCHEMA)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_shape(obj: Any) -> str | None:
    """Why ``obj`` is not a record of a known kind with known fields, or None."""
    if type(obj) is not dict:
        return f"not a JSON object: {_type_name(obj)}"
    kind = obj.get("kind")
    if kind not in _FIELD_TYPES:
        return f"unknown kind: {kind!r}" if kind is not None else "missing kind"
    allowed = _ALLOWED_KEYS[kind]
    if obj.keys() <= allowed:
        return None
    return f"fields not in the {kind} schema: {', '.join(sorted(obj.keys() - allowed))}"


def check_timestamp(obj: dict[str, Any]) -> str | None:
    """Why ``obj``'s timestamp cannot be typed, or None; a non-canonical one is normalised."""
    ts = obj.get("timestamp")
    if ts is None:
        return "missing timestamp"
    if type(ts) is not str:
        return f"wrong type for timestamp: {_type_name(ts)}"
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        return f"invalid timestamp: {ts[:40]!r}"
    if not _CANONICAL_TIMESTAMP.fullmatch(ts):
        if parsed.tzinfo is None:
            return f"timestamp without a time zone: {ts[:40]!r}"
        try:
            parsed = parsed.astimezone(UTC)
            obj["timestamp"] = format_timestamp(parsed)
        except (OverflowError, ValueError):
            return f"timestamp out of range: {ts[:40]!r}"
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        return f"timestamp out of range ({MIN_YEAR}..{MAX_YEAR}): {ts[:40]}"
    return None


_NONE = type(None)
_CANONICAL_ANCHORED = "^" + _CANONICAL_TIMESTAMP.pattern + "$"


def _timestamps(column: list[Any]) -> pa.Array | None:
    """The typed timestamps when every value is canonical and real, else None (slow path)."""
    if set(map(type, column)) != {str}:
        return None
    strings = pa.array(column, pa.string())
    if not pc.all(pc.match_substring_regex(strings, _CANONICAL_ANCHORED)).as_py():
        return None
    try:
        return strings.cast(pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


class _Columns(dict[str, list[Any]]):
    """Column lists of a batch of records, each pulled out once and shared by check and build."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__()
        self.records = records

    def __missing__(self, name: str) -> list[Any]:
        column = self[name] = [r.get(name) for r in self.records]
        return column


def _bad_rows(kind: str, columns: _Columns) -> dict[int, str]:
    """Rows of ``records`` that cannot be typed, with the reason; checked column by column so
    the common case (every value right) costs a few C-level passes, not Python per field."""
    records = columns.records
    bad: dict[int, str] = {}
    timestamps = _timestamps(columns["timestamp"])
    if timestamps is None:
        for i, r in enumerate(records):
            reason = check_timestamp(r)
            if reason:
                bad[i] = reason
    else:
        years = pc.year(timestamps)
        out = pc.or_(pc.less(years, MIN_YEAR), pc.greater(years, MAX_YEAR))
        for i in pc.indices_nonzero(out).to_pylist():
            bad[i] = check_timestamp(records[i]) or "timestamp out of range"
    services = columns["service"]
    if set(map(type, services)) == {str}:
        valid = pc.match_substring_regex(pa.array(services, pa.string()), _SERVICE.pattern)
        suspects = pc.indices_nonzero(pc.invert(valid)).to_pylist()
    else:
        suspects = range(len(records))
    for i in suspects:
        service = services[i]
        if type(service) is not str or not _SERVICE.fullmatch(service):
            bad.setdefault(i, f"invalid service: {service!r}")
    for name, types in (*_FIELD_TYPES[kind].items(), ("attributes", (dict,))):
        column = columns[name]
        if not set(map(type, column)) <= {*types, _NONE}:
            for i, value in enumerate(column):
                if value is not None and type(value) not in types:
                    bad.setdefault(i, f"wrong type for {name}: {_type_name(value)}")
    for name in _REQUIRED[kind]:
        column = columns[name]
        if None in column:
            for i, value in enumerate(column):
                if value is None:
                    bad.setdefault(i, f"missing {name} (required for a {kind} record)")
    return bad


def _promoted(key: str, typ: pa.DataType, attrs: list[dict[str, Any]]) -> pa.Array:
    values = [a.get(key) for a in attrs]
    kinds = set(map(type, values))
    if pa.types.is_integer(typ):
        if kinds <= {int, _NONE}:
            try:
                return pa.array(values, typ)
            except pa.ArrowInvalid:
                pass
        values = [v if type(v) is int and _INT32_MIN <= v <= _INT32_MAX else None for v in values]
    elif not kinds <= {int, float, _NONE}:
        values = [v if type(v) in _NUM else None for v in values]
    return pa.array(values, typ)


def _build(kind: str, columns: _Columns) -> pa.Table:
    schema = ARROW_SCHEMAS[kind]
    attrs = [a or {} for a in columns["attributes"]]
    timestamps = pa.array(columns["timestamp"], pa.string()).cast(pa.timestamp("us", tz="UTC"))
    promoted = {name: (key, typ) for name, key, typ in PROMOTED[kind]}
    dumps = orjson.dumps
    arrays: list[pa.Array] = []
    for f in schema:
        name = f.name
        if name == "timestamp":
            array = timestamps
        elif name == "dt":
            array = timestamps.cast(pa.date32())
        elif name == "hr":
            array = pc.hour(timestamps).cast(pa.int32())
        elif name == "attributes":
            # One JSON text per record, decoded by Arrow rather than by Python per record.
            array = pa.array([dumps(a) for a in attrs], pa.binary()).cast(pa.string())
        elif name in promoted:
            array = _promoted(*promoted[name], attrs)
        else:
            typ = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
            array = _array(columns[name], typ)
            if pa.types.is_dictionary(f.type):
                array = array.dictionary_encode().cast(f.type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def _array(values: list[Any], typ: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, typ)
    except pa.ArrowInvalid:
        if typ != pa.float64():
            raise
    # JSON numbers are doubles: an integer beyond 2**53 is stored as the nearest one, as every
    # JSON reader does, where Arrow refuses to round it by itself.
    return pa.array([float(v) if type(v) is int else v for v in values], typ)


# Per kind, the top-level fields Arrow pulls out of the parsed records in one conversion: the
# table's value type of each (the timestamp as its text, checked and cast afterwards).
_FIELDS: dict[str, pa.StructType] = {
    kind: pa.struct(
        [
            pa.field(
                f.name,
                pa.string()
                if f.name == "timestamp"
                else (f.type.value_type if pa.types.is_dictionary(f.type) else f.type),
            )
            for f in ARROW_SCHEMAS[kind]
            if f.name in _FIELD_TYPES[kind] or f.name in ("timestamp", "kind", "service")
        ]
    )
    for kind in KINDS
}
_NUMERIC_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(name for name, types in _FIELD_TYPES[kind].items() if types is _NUM)
    for kind in KINDS
}
_ATTRIBUTE_TYPES = frozenset({dict, _NONE})
_NUMBER_TYPES = frozenset({int, float, _NONE})


def _fast_table(kind: str, records: list[dict[str, Any]]) -> pa.Table | None:
    """``records`` typed without a Python step per field, or None when any of them would be
    refused or changed by the careful path (which then finds which, and why)."""
    try:
        fields = pa.array(records, _FIELDS[kind])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # a value of the wrong type (a string in a number's field, ...)
    columns = dict(zip(_FIELDS[kind].names, fields.flatten(), strict=True))
    for name in (*_REQUIRED[kind], "timestamp", "service"):
        if columns[name].null_count:
            return None
    for name in _NUMERIC_FIELDS[kind]:
        # Arrow reads true as 1.0 in a double column; the careful path refuses a boolean.
        if not set(map(type, [r.get(name) for r in records])) <= _NUMBER_TYPES:
            return None
    texts = columns["timestamp"]
    # A timestamp in any other form is normalised by the careful path, one by one.
    if not pc.all(pc.match_substring_regex(texts, _CANONICAL_ANCHORED)).as_py():
        return None
    try:
        timestamps = texts.cast(pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # matches the form but is no real moment (February 31st)
    years = pc.year(timestamps)
    if not pc.all(
        pc.and_(pc.greater_equal(years, MIN_YEAR), pc.less_equal(years, MAX_YEAR))
    ).as_py():
        return None
    if not pc.all(pc.match_substring_regex(columns["service"], SERVICE_PATTERN)).as_py():
        return None
    attributes = [r.get("attributes") for r in records]
    present = set(map(type, attributes))
    if not present <= _ATTRIBUTE_TYPES:
        return None
    if _NONE in present:
        attributes = [a if a is not None else {} for a in attributes]
    arrays: list[pa.Array] = []
    promoted = {name: (key, typ) for name, key, typ in PROMOTED[kind]}
    schema = ARROW_SCHEMAS[kind]
    for f in schema:
        name = f.name
        if name == "timestamp":
            array = timestamps
        elif name == "dt":
            array = timestamps.cast(pa.date32())
        elif name == "hr":
            array = pc.hour(timestamps).cast(pa.int32())
        elif name == "attributes":
            # orjson writes valid UTF-8: the bytes are the strings, without a check per value.
            array = pa.array(list(map(orjson.dumps, attributes)), pa.binary()).view(pa.string())
        elif name in promoted:
            array = _promoted(*promoted[name], attributes)
        elif pa.types.is_dictionary(f.type):
            array = pc.dictionary_encode(columns[name])
        else:
            array = columns[name]
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def decompress(data: bytes) -> bytes:
    """The body of a raw object: gzip (``.jsonl.gz``) is recognised by its magic bytes."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Typing allocates a few dicts, strings and lists per record and keeps them until the
    batch is built; each allocation burst made the cyclic collector walk every one of them
    again (a fifth of typing's CPU even with the pipeline's raised thresholds). None of them
    can form a cycle, so the collector waits until the batch is done."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def type_jsonl(
    data: bytes, *, source_key: str = "", partition: RawPartition | None = None
) -> Typed:
    """Type the JSON lines in ``data`` (one raw object, or several joined by newlines)."""
    with _collector_paused():
        return _type_jsonl(data, source_key, partition)


def _type_jsonl(data: bytes, source_key: str, partition: RawPartition | None) -> Typed:
    quarantine = _Quarantine(source_key, partition)
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    # Index into ``raw_lines`` of each record, to quarantine it with its line if a column
    # check refuses it later.
    origin: dict[str, list[int]] = {kind: [] for kind in KINDS}
    allowed_keys = _ALLOWED_KEYS
    loads = orjson.loads
    raw_lines = decompress(data).split(b"\n")
    lines = 0
    for index, line in enumerate(raw_lines):
        if not line:
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as exc:
            if line.isspace():
                continue
            lines += 1
            quarantine.add(index + 1, f"invalid JSON: {exc}", line)
            continue
        lines += 1
        # check_shape's verdict for the common case, without a call per record.
        if type(obj) is dict:
            kind = obj.get("kind")
            if kind in allowed_keys and obj.keys() <= allowed_keys[kind]:
                by_kind[kind].append(obj)
                origin[kind].append(index)
                continue
        quarantine.add(index + 1, check_shape(obj) or "unreadable record", line, obj)
    tables = {}
    for kind, records in by_kind.items():
        table, bad = _type_records(kind, records)
        for i, reason in sorted(bad.items()):
            index = origin[kind][i]
            quarantine.add(index + 1, reason, raw_lines[index], records[i])
        tables[kind] = table
    return Typed(tables=tables, quarantine=quarantine.table(), lines=lines)


# Records typed per attempt once the fast path has refused a larger batch: small enough that a
# bad line sends only its neighbours down the careful path, large enough that Arrow's per-call
# costs stay small beside the work.
FALLBACK_BLOCK = 1024


def _type_records(kind: str, records: list[dict[str, Any]]) -> tuple[pa.Table, dict[int, str]]:
    """The typed rows of ``records`` and the index -> reason of those that cannot be typed."""
    table = _fast_table(kind, records) if records else None
    if table is not None:
        return table, {}
    if len(records) > FALLBACK_BLOCK:
        tables, bad = [], {}
        for start in range(0, len(records), FALLBACK_BLOCK):
            block_table, block_bad = _type_records(kind, records[start : start + FALLBACK_BLOCK])
            tables.append(block_table)
            bad |= {start + i: reason for i, reason in block_bad.items()}
        return pa.concat_tables(tables).combine_chunks(), bad
    columns = _Columns(records)
    bad = _bad_rows(kind, columns)
    if bad:
        # check_timestamp may have normalised some timestamps: pull the columns anew.
        columns = _Columns([r for i, r in enumerate(records) if i not in bad])
    return _build(kind, columns), bad

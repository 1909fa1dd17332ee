"""Raw JSONL (the consumer's lake objects) -> one typed Arrow table per kind, plus quarantine.

Every non-blank line ends up in exactly one output: the table of its kind, or the quarantine
table with the reason and the raw line. Nothing is dropped: a line that cannot be typed is a
quarantined row, and a quarantined row is counted like any other.

Two paths, which give the same rows for the lines they both accept. The fast path decodes each
line with msgspec straight into a struct of its kind (a value of the wrong type, a missing
required field or a field the schema does not have makes msgspec refuse the line), keeps
``attributes`` as the line's own JSON text, and checks the values (the timestamp's form and range,
the service name) as whole Arrow columns. Whatever it refuses, a line or a row, goes to the
careful path: orjson parses the line and each record is checked field by field, which gives each
bad line its own reason. Both sides are C; Python touches each record only to hand it from one
to the other, because pure-Python work per field was the ETL's bottleneck.

The Ingestion Interface already validated every record against ``stages.common.records.Record``;
this step re-checks what the typed columns depend on (kind, known fields, types, the timestamp,
the service name that becomes a partition value) and does not repeat the finer rules (level
names, id hex).

Values of ``attributes`` keep their JSON form in the ``attributes`` column (a JSON object text);
the frequent keys are also promoted to typed columns, which are null when the attribute is absent
or not of the column's type (the value is still in ``attributes``).
"""

from __future__ import annotations

import bisect
import gc
import itertools
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Union

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from isal import igzip

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
_NEWLINE, _OPEN, _CLOSE = ord("\n"), ord("{"), ord("}")

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

_EMPTY_QUARANTINE = QUARANTINE_SCHEMA.empty_table()


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
# Made once: an empty table of a schema with dictionary columns costs ~70 us to build, paid
# for each kind absent from a call (two of the three for a raw object of one stream).
_EMPTY_TABLES: dict[str, pa.Table] = {kind: ARROW_SCHEMAS[kind].empty_table() for kind in KINDS}


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
    # Several objects typed in one call: the first line number (1-based, in the joined lines)
    # of each object, and its key; a quarantined row names its own object and line in it.
    object_starts: list[int] = field(default_factory=list)
    object_keys: list[str] = field(default_factory=list)
    # Lines before the piece being typed (``CHUNK_BYTES``) in the whole body.
    line_offset: int = 0

    def add(self, line_number: int, reason: str, line: bytes | None, obj: Any = None) -> None:
        record = obj if isinstance(obj, dict) else {}
        kind, service = record.get("kind"), record.get("service")
        source_key = self.source_key
        line_number += self.line_offset
        if self.object_starts:
            i = bisect.bisect_right(self.object_starts, line_number) - 1
            source_key = self.object_keys[i]
            line_number -= self.object_starts[i] - 1
        rows = self.rows
        rows["source_key"].append(source_key)
        rows["line_number"].append(line_number)
        rows["reason"].append(reason)
        rows["raw_line"].append(None if line is None else line.decode("utf-8", errors="replace"))
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
        if not self.rows["reason"]:
            return _EMPTY_QUARANTINE
        return pa.table(self.rows, schema=QUARANTINE_SCHEMA)


def quarantine_object(key: str, partition: RawPartition, kind: str, reason: str) -> pa.Table:
    """The quarantine row of a whole object that yields no line (line 0, no raw line)."""
    quarantine = _Quarantine(key, partition)
    quarantine.add(0, reason, None, {"kind": kind})
    return quarantine.table()


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
    # dict.get mapped from C: no Python frame per record.
    return _promoted_values(typ, list(map(dict.get, attrs, itertools.repeat(key))))


def _promoted_values(typ: pa.DataType, values: list[Any]) -> pa.Array:
    """A promoted column: each value of the column's type, else null (it stays in attributes)."""
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
    return _array(values, typ)


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


def _line_struct(kind: str) -> type[msgspec.Struct]:
    """The fast path's decoding target for ``kind``: a field per column of the careful path's
    ``_FIELD_TYPES``, with the same types and the same required fields, nothing else allowed
    (``kind`` selects the struct), and ``attributes`` kept as its JSON text."""
    python_type = {_STR: str, _NUM: float, _BOOL: bool}
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [("timestamp", str), ("service", str)]
    for name, types in _FIELD_TYPES[kind].items():
        if name in _REQUIRED[kind]:
            fields.append((name, python_type[types]))
        else:
            fields.append((name, python_type[types] | None, None))
    fields.append(("attributes", msgspec.Raw, msgspec.Raw(b"{}")))
    return msgspec.defstruct(
        f"_{kind.capitalize()}Line",
        fields,
        tag_field="kind",
        tag=kind,
        forbid_unknown_fields=True,
        kw_only=True,
        gc=False,
    )


_LINE_STRUCTS: dict[str, type[msgspec.Struct]] = {kind: _line_struct(kind) for kind in KINDS}
_KIND_OF: dict[type, str] = {struct: kind for kind, struct in _LINE_STRUCTS.items()}
_LINE_DECODER = msgspec.json.Decoder(Union[tuple(_LINE_STRUCTS.values())])  # noqa: UP007
# Per kind, the Arrow struct the decoded fields are converted to in one call (the timestamp as
# its text, checked and cast afterwards; ``kind`` is the struct's tag, not a field; the
# low-cardinality strings straight into their dictionary columns), and the getter that lists
# them in its order.
_FIELDS: dict[str, pa.StructType] = {
    kind: pa.struct(
        [
            pa.field(f.name, pa.string() if f.name == "timestamp" else f.type)
            for f in ARROW_SCHEMAS[kind]
            if f.name in _FIELD_TYPES[kind] or f.name in ("timestamp", "service")
        ]
    )
    for kind in KINDS
}
_FIELD_GETTERS = {kind: operator.attrgetter(*_FIELDS[kind].names) for kind in KINDS}
_GET_ATTRIBUTES = operator.attrgetter("attributes")


class _FastRefused(Exception):
    """Rows of a fast batch that the careful path must look at (positions in the batch)."""

    def __init__(self, positions: list[int]) -> None:
        super().__init__(f"{len(positions)} rows for the careful path")
        self.positions = positions


def _refused(ok: pa.Array) -> list[int]:
    return pc.indices_nonzero(pc.invert(ok)).to_pylist()


def _fast_table(kind: str, records: list[msgspec.Struct]) -> pa.Table:
    """The typed rows of records decoded into ``_LINE_STRUCTS[kind]``; raises ``_FastRefused``
    with the rows the careful path has to check (their types are right, their values may not
    be: a timestamp in another form or range, a service name, the attributes' JSON)."""
    names = _FIELDS[kind].names
    fields = pa.array(list(map(_FIELD_GETTERS[kind], records)), _FIELDS[kind])
    columns = dict(zip(names, fields.flatten(), strict=True))
    texts = columns["timestamp"]
    if not _all_canonical(texts):
        raise _FastRefused(_refused(pc.match_substring_regex(texts, _CANONICAL_ANCHORED)))
    # A batch holds a few services: the names are checked once each, by the careful path's
    # own pattern, on the column's dictionary.
    services = columns["service"]
    names_ok = [_SERVICE.fullmatch(name) is not None for name in services.dictionary.to_pylist()]
    if not all(names_ok):
        bad = pa.array([i for i, ok in enumerate(names_ok) if not ok], pa.int32())
        raise _FastRefused(pc.indices_nonzero(pc.is_in(services.indices, bad)).to_pylist())
    try:
        timestamps = texts.cast(pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # The canonical form, but not a real moment (February 31st): find which, one by one.
        raise _FastRefused(
            [i for i, text in enumerate(texts.to_pylist()) if not _is_moment(text)]
        ) from None
    first, last = pc.min_max(timestamps).values()
    if first.as_py().year < MIN_YEAR or last.as_py().year > MAX_YEAR:
        years = pc.year(timestamps)
        raise _FastRefused(
            _refused(pc.and_(pc.greater_equal(years, MIN_YEAR), pc.less_equal(years, MAX_YEAR)))
        )
    raws = list(map(_GET_ATTRIBUTES, records))
    # The line decoder only skipped over the attributes: parsing them with the careful path's
    # parser refuses what it refuses (a number out of range, a lone surrogate, bytes that are
    # not UTF-8) and gives the promoted keys the same values.
    objects = _attribute_objects(raws)
    # The stored text is the line's own: no second serialisation per record, and no second
    # UTF-8 check (orjson parsed these very bytes).
    offsets = np.zeros(len(raws) + 1, np.int32)
    np.cumsum(np.fromiter(map(len, raws), np.int32, len(raws)), out=offsets[1:])
    attributes = pa.StringArray.from_buffers(
        len(raws), pa.py_buffer(offsets), pa.py_buffer(b"".join(raws))
    )
    if None in objects:
        attributes = pc.if_else(pc.equal(attributes, "null"), "{}", attributes)
        objects = [o if o is not None else {} for o in objects]
    promoted = {name: (key, typ) for name, key, typ in PROMOTED[kind]}
    # The partition columns and the constant kind from numpy: each Arrow compute call costs
    # tens of microseconds however few its rows.
    micros = timestamps.view(pa.int64()).to_numpy()
    count = len(records)
    arrays: list[pa.Array] = []
    schema = ARROW_SCHEMAS[kind]
    for f in schema:
        name = f.name
        if name == "timestamp":
            array = timestamps
        elif name == "dt":
            days = (micros // _MICROS_PER_DAY).astype(np.int32)
            array = pa.Array.from_buffers(pa.date32(), count, [None, pa.py_buffer(days)])
        elif name == "hr":
            hours = (micros // _MICROS_PER_HOUR % 24).astype(np.int32)
            array = pa.Array.from_buffers(pa.int32(), count, [None, pa.py_buffer(hours)])
        elif name == "kind":
            indices = pa.py_buffer(np.zeros(count, np.int32))
            array = pa.DictionaryArray.from_buffers(
                f.type, count, [None, indices], dictionary=_KIND_DICTIONARIES[kind]
            )
        elif name == "attributes":
            array = attributes
        elif name in promoted:
            array = _promoted(*promoted[name], objects)
        else:
            array = columns[name]
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


_MICROS_PER_HOUR = 3_600_000_000
_MICROS_PER_DAY = 24 * _MICROS_PER_HOUR
_KIND_DICTIONARIES = {kind: pa.array([kind], pa.string()) for kind in KINDS}
# The canonical form as a mask of its digit positions and the bytes between them.
_TIMESTAMP_FORM = "0000-00-00T00:00:00.000Z"
_TIMESTAMP_LENGTH = len(_TIMESTAMP_FORM)
_TIMESTAMP_DIGITS = np.array([c == "0" for c in _TIMESTAMP_FORM])
_TIMESTAMP_PUNCTUATION = np.frombuffer(_TIMESTAMP_FORM.replace("0", "").encode(), np.uint8)


def _all_canonical(texts: pa.StringArray) -> bool:
    """Whether every text has the canonical form ``YYYY-MM-DDTHH:MM:SS.mmmZ``: all of one
    length, so the characters are one table of bytes, compared a column at a time (a regular
    expression over the column costs more than the rest of the checks together)."""
    count = len(texts)
    if not count:
        return True
    if texts.null_count:
        return False
    offsets = np.frombuffer(texts.buffers()[1], np.int32)[texts.offset : texts.offset + count + 1]
    if not (np.diff(offsets) == _TIMESTAMP_LENGTH).all():
        return False
    start, end = int(offsets[0]), int(offsets[-1])
    chars = np.frombuffer(texts.buffers()[2], np.uint8)[start:end].reshape(count, -1)
    digits = chars[:, _TIMESTAMP_DIGITS]
    return bool(
        ((digits >= ord("0")) & (digits <= ord("9"))).all()
        and (chars[:, ~_TIMESTAMP_DIGITS] == _TIMESTAMP_PUNCTUATION).all()
    )


def _attribute_objects(raws: list[msgspec.Raw]) -> list[dict[str, Any] | None]:
    """Each record's attributes parsed by orjson, the careful path's parser, or ``_FastRefused``
    with the records whose attributes it refuses or that are not a JSON object or null."""
    # One parser call for the whole batch: each raw text is one JSON value, so joined with
    # commas they are an array, each value as deep in it as in its line.
    try:
        objects = orjson.loads(b"[" + b",".join(raws) + b"]")
    except orjson.JSONDecodeError:
        objects = None
    if objects is not None and set(map(type, objects)) <= _ATTRIBUTE_TYPES:
        return objects
    refused = []
    for i, raw in enumerate(raws):
        try:
            (value,) = orjson.loads(b"[" + raw + b"]")
        except orjson.JSONDecodeError:
            refused.append(i)
            continue
        if type(value) not in _ATTRIBUTE_TYPES:
            refused.append(i)
    raise _FastRefused(refused)


_ATTRIBUTE_TYPES = frozenset({dict, _NONE})


def _is_moment(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def decompress(data: bytes) -> bytes:
    """The body of a raw object: gzip (``.jsonl.gz``) is recognised by its magic bytes."""
    return igzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


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


def type_objects(
    objects: Sequence[tuple[str, bytes]], *, partition: RawPartition | None = None
) -> Typed:
    """Type several raw objects (key, body) in one call, as one batch: the per-call costs are
    paid once, and each quarantined row still names its own object and its line there."""
    bodies = [decompress(data) for _, data in objects]
    starts, keys, next_line = [], [], 1
    for (key, _), body in zip(objects, bodies, strict=True):
        starts.append(next_line)
        keys.append(key)
        next_line += body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    data = b"".join(body if body.endswith(b"\n") or not body else body + b"\n" for body in bodies)
    quarantine = _Quarantine("", partition, object_starts=starts, object_keys=keys)
    with _collector_paused():
        return _type_data(data, quarantine)


def _type_jsonl(data: bytes, source_key: str, partition: RawPartition | None) -> Typed:
    return _type_data(decompress(data), _Quarantine(source_key, partition))


# Bytes typed at a time: a raw partition of many thousand records is typed in pieces of
# whole lines of at most about twice this size, so that one piece's decoded records stay in the
# CPU's caches (30,000 log lines typed at once cost 3.8 us per record, in pieces 3.1).
CHUNK_BYTES = 2 << 20


def _type_data(data: bytes, quarantine: _Quarantine) -> Typed:
    parts: dict[str, list[pa.Table]] = {kind: [] for kind in KINDS}
    lines = 0
    for chunk in _chunks(data):
        tables, chunk_lines, raw_lines = _type_chunk(chunk, quarantine)
        quarantine.line_offset += raw_lines
        lines += chunk_lines
        for kind, table in tables.items():
            if table.num_rows or not parts[kind]:
                parts[kind].append(table)
    quarantine.line_offset = 0
    tables = {
        kind: kind_parts[0]
        if len(kind_parts) == 1
        else pa.concat_tables(kind_parts).combine_chunks()
        for kind, kind_parts in parts.items()
    }
    return Typed(tables=tables, quarantine=quarantine.table(), lines=lines)


def _chunks(data: bytes) -> Iterator[bytes]:
    """``data`` in pieces of whole lines, of ``CHUNK_BYTES`` to twice that (or all of it)."""
    pieces = len(data) // CHUNK_BYTES
    if pieces < 2:
        yield data
        return
    size = len(data) // pieces
    start = 0
    while len(data) - start > size * 3 // 2:
        end = data.find(b"\n", start + size)
        if end < 0:
            break
        yield data[start : end + 1]
        start = end + 1
    yield data[start:]


def _type_chunk(data: bytes, quarantine: _Quarantine) -> tuple[dict[str, pa.Table], int, int]:
    """The tables of a piece of whole lines, its typed and quarantined lines, and its lines."""
    whole = _decode_whole(data)
    if whole is not None:
        lines = sum(len(origin) for _, origin in whole.values())
        return *_type_decoded(whole, [], lambda: data.split(b"\n"), quarantine), lines
    raw_lines = data.split(b"\n")
    fast, careful = _decode(raw_lines)
    lines = len(raw_lines) - (1 if not raw_lines[-1] else 0)
    return *_type_decoded(fast, careful, lambda: raw_lines, quarantine), lines


def _type_decoded(
    fast: dict[str, tuple[list[msgspec.Struct], list[int]]],
    careful: list[int],
    split: Callable[[], list[bytes]],
    quarantine: _Quarantine,
) -> tuple[dict[str, pa.Table], int]:
    parts: dict[str, list[tuple[pa.Table, list[int]]]] = {kind: [] for kind in KINDS}
    for kind, (records, origin) in fast.items():
        while records:
            try:
                parts[kind].append((_fast_table(kind, records), origin))
                break
            except _FastRefused as refused:
                # A refusal that names no row would come back at every try: all go careful.
                positions = refused.positions or range(len(records))
                out = set(positions)
                careful += [origin[i] for i in positions]
                records = [r for i, r in enumerate(records) if i not in out]
                origin = [o for i, o in enumerate(origin) if i not in out]
    lines = sum(len(origin) for kind_parts in parts.values() for _, origin in kind_parts)
    if careful:
        careful_tables, careful_lines = _careful(split(), sorted(careful), quarantine)
        lines += careful_lines
        for kind, part in careful_tables.items():
            parts[kind].append(part)
    return {kind: _in_line_order(kind, kind_parts) for kind, kind_parts in parts.items()}, lines


def _decode_whole(data: bytes) -> dict[str, tuple[list[msgspec.Struct], list[int]]] | None:
    """The common case in one decoder call over the whole body (no split into lines, no call
    per line): every line one record. None when that cannot be shown, and the body
    goes line by line (``_decode``).

    msgspec's ``decode_lines`` reads a stream of whitespace-separated values, not one value per
    line, so its records are the lines' only when every line holds exactly one value. JSON
    strings cannot hold a raw newline (msgspec refuses one), so each newline in the body is
    whitespace between tokens; inside a value a ``}`` is never followed by a ``{``, so a newline
    between ``}`` and ``{`` lies between two values. When every line but the first starts that
    way, and the first starts with ``{``, no value spans two lines and no line is blank; with as
    many values as lines, each line holds exactly one."""
    if not data.startswith(b"{") or not data.endswith((b"}\n", b"}")):
        return None
    # The newlines found once as positions and their neighbours compared as whole arrays:
    # bytes.count of a three-byte pattern scans at about 1 GB/s, a tenth of typing's CPU.
    body = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(body == _NEWLINE)
    separators = newlines[:-1] if data.endswith(b"\n") else newlines
    if not ((body[separators - 1] == _CLOSE).all() and (body[separators + 1] == _OPEN).all()):
        return None
    lines = len(separators) + 1
    try:
        decoded = _LINE_DECODER.decode_lines(data)
    except (msgspec.MsgspecError, RecursionError):
        return None
    if len(decoded) != lines:
        return None
    return _by_kind(decoded)


def _by_kind(
    decoded: list[msgspec.Struct],
) -> dict[str, tuple[list[msgspec.Struct], list[int]]]:
    """Decoded lines by kind, with their line indices: a raw object holds one kind; a body of
    several kinds is grouped here rather than decoded again line by line."""
    types = set(map(type, decoded))
    if len(types) == 1:
        return {_KIND_OF[types.pop()]: (decoded, list(range(len(decoded))))}
    grouped: dict[str, tuple[list[msgspec.Struct], list[int]]] = {kind: ([], []) for kind in KINDS}
    by_type = {struct: grouped[kind] for struct, kind in _KIND_OF.items()}
    for index, record in enumerate(decoded):
        records, origin = by_type[type(record)]
        records.append(record)
        origin.append(index)
    return grouped


def _decode(
    raw_lines: list[bytes],
) -> tuple[dict[str, tuple[list[msgspec.Struct], list[int]]], list[int]]:
    """The lines the fast path decodes, by kind with their line indices, and the indices of
    the non-blank lines it refuses (left to the careful path, which says why)."""
    decode = _LINE_DECODER.decode
    lines = raw_lines[:-1] if raw_lines and not raw_lines[-1] else raw_lines
    if b"" not in lines:
        # The common case: one decoder call per line from C.
        try:
            decoded = list(map(decode, lines))
        except (msgspec.MsgspecError, RecursionError):
            pass
        else:
            return _by_kind(decoded), []
    fast: dict[str, tuple[list[msgspec.Struct], list[int]]] = {kind: ([], []) for kind in KINDS}
    by_type = {struct: fast[kind] for struct, kind in _KIND_OF.items()}
    careful: list[int] = []
    for index, line in enumerate(lines):
        if not line:
            continue
        try:
            record = decode(line)
        except (msgspec.MsgspecError, RecursionError):
            careful.append(index)
            continue
        records, origin = by_type[type(record)]
        records.append(record)
        origin.append(index)
    return fast, careful


def _in_line_order(kind: str, parts: list[tuple[pa.Table, list[int]]]) -> pa.Table:
    if not parts:
        return _EMPTY_TABLES[kind]
    if len(parts) == 1:
        return parts[0][0]
    table = pa.concat_tables([table for table, _ in parts]).combine_chunks()
    origin = pa.array([i for _, part_origin in parts for i in part_origin], pa.int64())
    return table.take(pc.sort_indices(origin))


def _careful(
    raw_lines: list[bytes], indices: list[int], quarantine: _Quarantine
) -> tuple[dict[str, tuple[pa.Table, list[int]]], int]:
    """The lines at ``indices`` typed record by record, each refused one quarantined with the
    reason; returns the tables by kind with the line index of each row, and the lines read."""
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    origin: dict[str, list[int]] = {kind: [] for kind in KINDS}
    allowed_keys = _ALLOWED_KEYS
    loads = orjson.loads
    lines = 0
    for index in indices:
        line = raw_lines[index]
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as exc:
            if line.isspace():
                continue
            lines += 1
            quarantine.add(index + 1, f"invalid JSON: {exc}", line)
            continue
        lines += 1
        if type(obj) is dict:
            kind = obj.get("kind")
            if kind in allowed_keys and obj.keys() <= allowed_keys[kind]:
                by_kind[kind].append(obj)
                origin[kind].append(index)
                continue
        quarantine.add(index + 1, check_shape(obj) or "unreadable record", line, obj)
    tables = {}
    for kind, records in by_kind.items():
        if not records:
            continue
        columns = _Columns(records)
        bad = _bad_rows(kind, columns)
        for i, reason in sorted(bad.items()):
            index = origin[kind][i]
            quarantine.add(index + 1, reason, raw_lines[index], records[i])
        if bad:
            # check_timestamp may have normalised some timestamps: pull the columns anew.
            columns = _Columns([r for i, r in enumerate(records) if i not in bad])
        kept = [index for i, index in enumerate(origin[kind]) if i not in bad]
        tables[kind] = (_build(kind, columns), kept)
    return tables, lines

"""Canonical records straight to OTLP-JSON and index entries, without protobuf messages.

Building ``ExportLogsServiceRequest`` messages and printing them with
``json_format.MessageToDict`` cost ~160 us per record (a 500-record batch: 28 ms to build,
52 ms to print, 9 ms to read back for the index), so consolidation alone needed a full core
per ~5,000 records/s. This module writes the same document directly: same keys, same key
order (protobuf prints fields by field number), the same value forms (int64 as strings, ids
as hex, unset fields left out); ``tests/consolidation/test_canonical.py`` holds it to the
protobuf path byte for byte. A batch this module cannot mirror exactly (an int attribute
outside int64, a timestamp before 1970: protobuf refuses those) returns None, and the
caller takes the protobuf path, which fails for it exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson

from stages.common.records import Record
from stages.consolidation.otel import (
    DEFAULT_SCOPE,
    SEVERITY_NUMBERS,
    record_attributes,
    record_body,
    record_severity,
    timestamp_nanos,
)
from stages.consolidation.query import LogEntry

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class _NotMirrorable(Exception):
    """A value the protobuf path treats differently (refuses); the caller falls back to it."""


def _json_value(value: Any) -> tuple[dict[str, Any], Any]:
    """(OTLP-JSON AnyValue, the plain value the index keeps), as ``any_value`` +
    ``MessageToDict`` + ``plain_value`` would make them."""
    if type(value) is str:  # most attributes: skip the isinstance chain below
        return {"stringValue": value}, value
    if isinstance(value, bool):
        return {"boolValue": value}, value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _NotMirrorable
        return {"intValue": str(value)}, value
    if isinstance(value, float):
        if math.isinf(value):
            return {"doubleValue": "-Infinity" if value < 0 else "Infinity"}, value
        if math.isnan(value):
            return {"doubleValue": "NaN"}, value
        return {"doubleValue": value}, value
    text = str(value)
    return {"stringValue": text}, text


def _key_values(values: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    printed: list[dict[str, Any]] = []
    plain: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        json_value, plain[key] = _json_value(value)
        # proto3 leaves an empty string field out of its JSON.
        printed.append({"key": key, "value": json_value} if key else {"value": json_value})
    return printed, plain


def _log_record(
    record: Record, observed: int, service: str, host: str | None
) -> tuple[dict[str, Any], LogEntry]:
    severity = record_severity(record)
    number = SEVERITY_NUMBERS[severity]
    body = record_body(record)
    time_nanos = timestamp_nanos(record.timestamp)
    if time_nanos < 0:
        raise _NotMirrorable
    attributes, plain = _key_values(record_attributes(record))
    # Field-number order: time 1, severity 2-3, body 5, attributes 6, trace 9, span 10,
    # observed 11; zero / empty fields are not printed.
    printed: dict[str, Any] = {}
    if time_nanos:
        printed["timeUnixNano"] = str(time_nanos)
    printed["severityNumber"] = number
    printed["severityText"] = severity
    printed["body"] = {"stringValue": body}
    if attributes:
        printed["attributes"] = attributes
    if record.trace_id:
        printed["traceId"] = record.trace_id
    if record.span_id:
        printed["spanId"] = record.span_id
    if observed:
        printed["observedTimeUnixNano"] = str(observed)
    entry = LogEntry(
        time_unix_nano=time_nanos or observed,
        service=service,
        host=host,
        severity_number=number,
        severity_text=severity,
        body=body,
        trace_id=record.trace_id or "",
        span_id=record.span_id or "",
        is_anomaly=plain.get("is_anomaly") is True,
        attributes_json=orjson.dumps(plain).decode(),
    )
    return printed, entry


def records_to_otlp_json(
    records: Iterable[Record], environment: str, observed_nanos: int
) -> tuple[dict[str, Any], list[LogEntry]] | None:
    """``to_otlp_json(records_to_request(...))`` and ``entries_from_request`` of it, in one
    pass; None when the batch holds a value only the protobuf path can judge."""
    grouped: dict[tuple[str, str | None], dict[str, list[tuple[dict[str, Any], LogEntry]]]] = {}
    try:
        for record in records:
            scopes = grouped.setdefault((record.service, record.host), {})
            scopes.setdefault(record.source or DEFAULT_SCOPE, []).append(
                _log_record(record, observed_nanos, record.service, record.host)
            )
    except _NotMirrorable:
        return None
    resource_logs: list[dict[str, Any]] = []
    entries: list[LogEntry] = []
    for (service, host), scopes in grouped.items():
        resource = {"service.name": service, "host.name": host}
        resource["deployment.environment"] = environment
        scope_logs = []
        for scope, pairs in scopes.items():
            scope_logs.append({"scope": {"name": scope}, "logRecords": [p for p, _ in pairs]})
            entries.extend(entry for _, entry in pairs)
        resource_logs.append(
            {"resource": {"attributes": _key_values(resource)[0]}, "scopeLogs": scope_logs}
        )
    return {"resourceLogs": resource_logs}, entries

"""Canonical records -> the OpenTelemetry log data model, and OTLP-JSON in and out.

OTLP-JSON is proto3's JSON mapping with two exceptions the OTLP spec makes: ``traceId`` and
``spanId`` are hex strings (not base64) and enums are integers. ``to_otlp_json`` and
``from_otlp_json`` apply them on top of ``google.protobuf.json_format``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from stages.common.records import Record

DEFAULT_SCOPE = "stages.log-synthesis"

# The first number of each range in the OpenTelemetry severity scale.
SEVERITY_NUMBERS: dict[str, int] = {
    "TRACE": 1,
    "DEBUG": 5,
    "INFO": 9,
    "WARN": 13,
    "ERROR": 17,
    "FATAL": 21,
}
_ID_FIELDS = ("traceId", "spanId")
_RECORD_FIELDS_AS_ATTRIBUTES = (
    "event_id",
    "log_type",
    "category",
    "kind",
    "is_anomaly",
    "anomaly_type",
    "scenario_id",
    "anomaly_score",
    "metric_name",
    "value",
    "unit",
    "name",
    "duration_ms",
    "status",
    "parent_span_id",
)


def severity_text_for(number: int) -> str:
    """The short name of the range ``number`` falls in (0 is unspecified)."""
    for text, first in reversed(SEVERITY_NUMBERS.items()):
        if number >= first:
            return text
    return "UNSPECIFIED"


def record_severity(record: Record) -> str:
    if record.level is not None:
        return record.level
    if record.kind == "apm" and record.status == "ERROR":
        return "ERROR"
    return "INFO"


def record_body(record: Record) -> str:
    if record.message is not None:
        return record.message
    if record.kind == "metric":
        return f"{record.metric_name}={record.value} {record.unit}"
    return f"{record.name} {record.duration_ms}ms {record.status}"


def timestamp_nanos(timestamp: str) -> int:
    moment = datetime.fromisoformat(timestamp)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def any_value(value: Any) -> AnyValue:
    # bool before int: True is an int in Python but a bool in OTLP.
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def key_values(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items() if v is not None]


def record_attributes(record: Record) -> dict[str, Any]:
    attributes = dict(record.attributes)
    for name in _RECORD_FIELDS_AS_ATTRIBUTES:
        value = getattr(record, name)
        if value is not None:
            attributes[name] = value
    return attributes


def log_record(record: Record, observed_nanos: int) -> LogRecord:
    severity = record_severity(record)
    result = LogRecord(
        time_unix_nano=timestamp_nanos(record.timestamp),
        observed_time_unix_nano=observed_nanos,
        severity_number=SEVERITY_NUMBERS[severity],
        severity_text=severity,
        body=AnyValue(string_value=record_body(record)),
        attributes=key_values(record_attributes(record)),
    )
    if record.trace_id:
        result.trace_id = bytes.fromhex(record.trace_id)
    if record.span_id:
        result.span_id = bytes.fromhex(record.span_id)
    return result


def records_to_request(
    records: Iterable[Record], environment: str, observed_nanos: int | None = None
) -> ExportLogsServiceRequest:
    """One ``ResourceLogs`` per (service, host), one ``ScopeLogs`` per source within it."""
    observed = observed_nanos if observed_nanos is not None else time.time_ns()
    grouped: dict[tuple[str, str | None], dict[str, list[LogRecord]]] = {}
    for record in records:
        scopes = grouped.setdefault((record.service, record.host), {})
        scopes.setdefault(record.source or DEFAULT_SCOPE, []).append(log_record(record, observed))
    request = ExportLogsServiceRequest()
    for (service, host), scopes in grouped.items():
        resource = {"service.name": service, "host.name": host}
        resource["deployment.environment"] = environment
        resource_logs = ResourceLogs()
        resource_logs.resource.attributes.extend(key_values(resource))
        for scope, log_records in scopes.items():
            resource_logs.scope_logs.append(
                ScopeLogs(scope=InstrumentationScope(name=scope), log_records=log_records)
            )
        request.resource_logs.append(resource_logs)
    return request


def to_otlp_json(request: ExportLogsServiceRequest) -> dict[str, Any]:
    data = json_format.MessageToDict(request, use_integers_for_enums=True)
    _convert_ids(data, _base64_to_hex)
    return data


def from_otlp_json(data: Any) -> ExportLogsServiceRequest:
    """Parse OTLP-JSON strictly (unknown fields are errors). Raises ``json_format.ParseError``."""
    if not isinstance(data, dict):
        raise json_format.ParseError("an ExportLogsServiceRequest is a JSON object")
    _convert_ids(data, _hex_to_base64)
    request = ExportLogsServiceRequest()
    json_format.ParseDict(data, request, ignore_unknown_fields=False)
    return request


def _convert_ids(data: dict[str, Any], convert: Any) -> None:
    for resource_logs in _items(data.get("resourceLogs")):
        for scope_logs in _items(resource_logs.get("scopeLogs")):
            for record in _items(scope_logs.get("logRecords")):
                for key in _ID_FIELDS:
                    if isinstance(record.get(key), str):
                        record[key] = convert(record[key])


def _items(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _base64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _hex_to_base64(value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError as exc:
        raise json_format.ParseError(f"trace and span ids are hex strings, not {value!r}") from exc

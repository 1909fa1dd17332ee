"""The OTLP/HTTP logs receiver's decoding and checks (protobuf and JSON bodies).

Status codes follow the OTLP/HTTP spec: 200 with an ``ExportLogsServiceResponse`` (naming
rejected records in ``partial_success``), 400 for a body that does not decode, 415 for other
content types, 413 for an oversized body; error bodies are ``google.rpc.Status`` in the
request's encoding.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from stages.common.records import text_problem
from stages.common.validation import MAX_BATCH_RECORDS
from stages.consolidation.otel import from_otlp_json

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 10 * 1024 * 1024
# What one request may hold, like the canonical batch route: an empty LogRecord is two bytes of
# protobuf, so the byte limit alone lets 10 MiB carry five million of them (gigabytes once
# decoded and stored). Values are attribute and body values, nested ones included.
MAX_RECORDS = MAX_BATCH_RECORDS
MAX_GROUPS = MAX_BATCH_RECORDS
MAX_VALUES = 64 * MAX_BATCH_RECORDS
# gRPC status codes used in google.rpc.Status bodies.
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14


class OtlpError(Exception):
    """A refusal with its HTTP status and the gRPC code for the Status body."""

    http_status = 400
    grpc_code = _INVALID_ARGUMENT

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class UndecodableBody(OtlpError):
    pass


class UnsupportedContentType(OtlpError):
    http_status = 415


class OtlpBodyTooLarge(OtlpError):
    http_status = 413
    grpc_code = _RESOURCE_EXHAUSTED


class TooManyItems(OtlpBodyTooLarge):
    """More records, resource/scope groups or values than one request may hold."""


class StoreUnavailable(OtlpError):
    http_status = 503
    grpc_code = _UNAVAILABLE


@dataclass(frozen=True)
class Screened:
    request: ExportLogsServiceRequest
    rejected: int
    message: str


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise UnsupportedContentType(f"Content-Encoding {encoding!r} is not supported (use gzip)")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise UndecodableBody(f"the gzip body does not decompress: {exc}") from exc
    if len(data) > MAX_BODY_BYTES:
        raise OtlpBodyTooLarge(f"the decompressed body exceeds {MAX_BODY_BYTES} bytes")
    return data


def decode_request(body: bytes, content_type: str | None) -> ExportLogsServiceRequest:
    kind = media_type(content_type)
    if kind == PROTOBUF:
        _count_message(body)
        request = ExportLogsServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise UndecodableBody(f"the body is not an ExportLogsServiceRequest: {exc}") from exc
        return request
    if kind == JSON:
        try:
            data = orjson.loads(body)
            # Counted before the conversion, which is what costs memory and time per item.
            _count_json(data)
            return from_otlp_json(data)
        except orjson.JSONDecodeError as exc:
            raise UndecodableBody(f"the body is not JSON: {exc}") from exc
        except json_format.ParseError as exc:
            raise UndecodableBody(f"the body is not OTLP-JSON logs: {exc}") from exc
    raise UnsupportedContentType(
        f"Content-Type {kind or '(none)'!r} is not supported; use {PROTOBUF} or {JSON}"
    )


class _Budget:
    """Counts what a request holds and stops at the first limit passed, so that counting never
    walks more than the limits allow."""

    def __init__(self) -> None:
        self.records = 0
        self.groups = 0
        self.values = 0
        self.wire_fields = 0
        self.depth = 0

    def add_records(self, count: int) -> None:
        self.records += count
        if self.records > MAX_RECORDS:
            raise TooManyItems(
                f"the request holds more than {MAX_RECORDS} log records; the limit is "
                f"{MAX_RECORDS} per request (send smaller batches)"
            )

    def add_groups(self, count: int) -> None:
        self.groups += count
        if self.groups > MAX_GROUPS:
            raise TooManyItems(
                f"the request holds more than {MAX_GROUPS} resourceLogs and scopeLogs; the "
                f"limit is {MAX_GROUPS} per request"
            )

    def add_wire_fields(self, count: int) -> None:
        self.wire_fields += count
        if self.wire_fields > MAX_WIRE_FIELDS:
            raise TooManyItems(
                f"the request holds more than {MAX_WIRE_FIELDS} protobuf fields; the limit is "
                f"{MAX_WIRE_FIELDS} per request"
            )

    def add_values(self, count: int) -> None:
        self.values += count
        if self.values > MAX_VALUES:
            raise TooManyItems(
                f"the request holds more than {MAX_VALUES} attribute and body values; the "
                f"limit is {MAX_VALUES} per request"
            )


# The protobuf is counted on the wire, before it is parsed: parsing millions of empty records
# alone takes far more memory than the service has. Each message type maps the numbers of its
# length-delimited fields to what they hold (field numbers from opentelemetry-proto); fields not
# listed are skipped unread.
_REQUEST = {1: "resource_logs"}
_RESOURCE_LOGS = {1: "resource", 2: "scope_logs"}
_RESOURCE = {1: "attribute", 3: "value"}  # attributes, entity_refs
_SCOPE_LOGS = {1: "scope", 2: "log_record"}
_SCOPE = {3: "attribute"}
_LOG_RECORD = {5: "any_value", 6: "attribute"}
_ANY_VALUE = {5: "array", 6: "kvlist"}
_VALUES = {1: "any_value_item"}  # ArrayValue.values
_KVLIST = {1: "attribute"}  # KeyValueList.values
_KEY_VALUE = {2: "any_value"}
# Every field the walk reads, whatever it holds: a request of nothing but unknown or scalar
# fields cannot make it loop for long either.
MAX_WIRE_FIELDS = 4 * MAX_VALUES
# What the protobuf runtime itself accepts (its default recursion limit).
MAX_WIRE_DEPTH = 100


def _count_message(body: bytes) -> None:
    budget = _Budget()
    _walk(memoryview(body), 0, len(body), _REQUEST, budget)


def _walk(buf: memoryview, pos: int, end: int, fields: dict[int, str], budget: _Budget) -> None:
    budget.depth += 1
    if budget.depth > MAX_WIRE_DEPTH:
        raise UndecodableBody(
            f"the body nests messages more than {MAX_WIRE_DEPTH} deep (the protobuf limit)"
        )
    fields_read = 0
    while pos < end:
        fields_read += 1
        if fields_read == 1024:  # counted in steps: a message of only unknown fields is bounded too
            budget.add_wire_fields(fields_read)
            fields_read = 0
        key = buf[pos]
        if key < 0x80:  # one-byte tags: every field of these messages
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        wire_type = key & 7
        if wire_type == 2:
            length = buf[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = _varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise UndecodableBody("the body is not an ExportLogsServiceRequest (truncated)")
            what = fields.get(key >> 3)
            if what is not None:
                budget.add_wire_fields(fields_read)
                fields_read = 0
                _enter(what, buf, pos, stop, budget)
            pos = stop
        elif wire_type == 0:
            _, pos = _varint(buf, pos, end)
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        else:
            raise UndecodableBody(
                f"the body is not an ExportLogsServiceRequest (wire type {wire_type})"
            )
    budget.add_wire_fields(fields_read)
    if pos != end:
        raise UndecodableBody("the body is not an ExportLogsServiceRequest (truncated)")
    budget.depth -= 1


def _enter(what: str, buf: memoryview, pos: int, end: int, budget: _Budget) -> None:
    if what == "resource_logs":
        budget.add_groups(1)
        _walk(buf, pos, end, _RESOURCE_LOGS, budget)
    elif what == "scope_logs":
        budget.add_groups(1)
        _walk(buf, pos, end, _SCOPE_LOGS, budget)
    elif what == "log_record":
        budget.add_records(1)
        _walk(buf, pos, end, _LOG_RECORD, budget)
    elif what == "resource":
        _walk(buf, pos, end, _RESOURCE, budget)
    elif what == "scope":
        _walk(buf, pos, end, _SCOPE, budget)
    elif what == "attribute":
        budget.add_values(1)
        _walk(buf, pos, end, _KEY_VALUE, budget)
    elif what == "value":
        budget.add_values(1)
    elif what == "any_value_item":
        budget.add_values(1)
        _walk(buf, pos, end, _ANY_VALUE, budget)
    elif what == "any_value":
        _walk(buf, pos, end, _ANY_VALUE, budget)
    elif what == "array":
        _walk(buf, pos, end, _VALUES, budget)
    elif what == "kvlist":
        _walk(buf, pos, end, _KVLIST, budget)


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift < 70:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise UndecodableBody("the body is not an ExportLogsServiceRequest (bad varint)")


def _count_json(data: Any) -> None:
    budget = _Budget()
    resources = _json_list(data, "resourceLogs")
    budget.add_groups(len(resources))
    for resource_logs in resources:
        _count_json_attributes(_json_get(resource_logs, "resource"), budget)
        scopes = _json_list(resource_logs, "scopeLogs")
        budget.add_groups(len(scopes))
        for scope_logs in scopes:
            _count_json_attributes(_json_get(scope_logs, "scope"), budget)
            records = _json_list(scope_logs, "logRecords")
            budget.add_records(len(records))
            for record in records:
                _count_json_attributes(record, budget)
                if _json_get(record, "body") is not None:
                    budget.add_values(1)
                    _count_json_value(_json_get(record, "body"), budget)


def _json_get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, dict) else None


def _json_list(node: Any, key: str) -> list[Any]:
    value = _json_get(node, key)
    return value if isinstance(value, list) else []


def _count_json_attributes(node: Any, budget: _Budget) -> None:
    attributes = _json_list(node, "attributes")
    budget.add_values(len(attributes))
    for attribute in attributes:
        _count_json_value(_json_get(attribute, "value"), budget)


def _count_json_value(value: Any, budget: _Budget) -> None:
    items = _json_list(_json_get(value, "arrayValue"), "values")
    if items:
        budget.add_values(len(items))
        for item in items:
            _count_json_value(item, budget)
    pairs = _json_get(value, "kvlistValue")
    if pairs is not None:
        _count_json_attributes({"attributes": _json_get(pairs, "values")}, budget)


def record_problem(record: object) -> str | None:
    """Why a decoded log record cannot be stored, or None."""
    trace_id = getattr(record, "trace_id", b"")
    span_id = getattr(record, "span_id", b"")
    severity = getattr(record, "severity_number", 0)
    if len(trace_id) not in (0, 16):
        return f"traceId must be 16 bytes, got {len(trace_id)}"
    if len(span_id) not in (0, 8):
        return f"spanId must be 8 bytes, got {len(span_id)}"
    if not 0 <= severity <= 24:
        return f"severityNumber must be 0..24, got {severity}"
    return _text_problem(record)


def _text_problem(record: object) -> str | None:
    """The first string of a log record (severityText, body, attribute keys and values, nested
    values) that cannot be stored (``records.text_problem``), or None. A lone surrogate cannot
    arrive (protobuf and orjson refuse it); NUL and control characters can."""
    severity_text = getattr(record, "severity_text", "")
    problem = text_problem(severity_text) if severity_text else None
    if problem is not None:
        return f"severityText {problem}"
    if record.HasField("body"):  # type: ignore[attr-defined]
        problem = _any_value_problem(record.body, "body")  # type: ignore[attr-defined]
        if problem is not None:
            return problem
    return _attributes_problem(getattr(record, "attributes", ()), "attributes")


def _scope_problem(scope: Any) -> str | None:
    for name in ("name", "version"):
        problem = text_problem(getattr(scope, name))
        if problem is not None:
            return f"scope.{name} {problem}"
    return _attributes_problem(scope.attributes, "scope.attributes")


def _attributes_problem(attributes: Iterable[Any], where: str) -> str | None:
    for attribute in attributes:
        problem = text_problem(attribute.key)
        if problem is not None:
            return f"{where}: a key {problem}"
        problem = _any_value_problem(attribute.value, f"{where}.{attribute.key}")
        if problem is not None:
            return problem
    return None


def _any_value_problem(value: Any, where: str) -> str | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        problem = text_problem(value.string_value)
        return None if problem is None else f"{where} {problem}"
    if kind == "array_value":
        for index, item in enumerate(value.array_value.values):
            problem = _any_value_problem(item, f"{where}[{index}]")
            if problem is not None:
                return problem
    if kind == "kvlist_value":
        return _attributes_problem(value.kvlist_value.values, where)
    return None


def screen(request: ExportLogsServiceRequest) -> Screened:
    """Drop log records that break the data model; count them for ``partial_success``."""
    rejected = 0
    first_problem = ""
    for resource_logs in request.resource_logs:
        resource_problem = _attributes_problem(resource_logs.resource.attributes, "resource")
        for scope_logs in resource_logs.scope_logs:
            # Resource and scope text is stored with each of their records: theirs is refused
            # with them.
            group_problem = resource_problem or _scope_problem(scope_logs.scope)
            keep = []
            for record in scope_logs.log_records:
                problem = group_problem or record_problem(record)
                if problem is None:
                    keep.append(record)
                    continue
                rejected += 1
                first_problem = first_problem or problem
            if rejected:
                del scope_logs.log_records[:]
                scope_logs.log_records.extend(keep)
    return Screened(request, rejected, first_problem)


def export_response(screened: Screened, content_type: str) -> bytes:
    response = ExportLogsServiceResponse()
    if screened.rejected:
        response.partial_success.CopyFrom(
            ExportLogsPartialSuccess(
                rejected_log_records=screened.rejected, error_message=screened.message
            )
        )
    return _encode(response, content_type)


def status_body(error: OtlpError, content_type: str) -> bytes:
    return _encode(Status(code=error.grpc_code, message=error.message), content_type)


def response_media_type(content_type: str | None) -> str:
    return PROTOBUF if media_type(content_type) == PROTOBUF else JSON


def _encode(message: ExportLogsServiceResponse | Status, content_type: str) -> bytes:
    if content_type == PROTOBUF:
        return message.SerializeToString()
    return orjson.dumps(json_format.MessageToDict(message, use_integers_for_enums=True))

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
from stages.consolidation.otel import from_otlp_json

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 10 * 1024 * 1024
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
        request = ExportLogsServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise UndecodableBody(f"the body is not an ExportLogsServiceRequest: {exc}") from exc
        return request
    if kind == JSON:
        try:
            return from_otlp_json(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise UndecodableBody(f"the body is not JSON: {exc}") from exc
        except json_format.ParseError as exc:
            raise UndecodableBody(f"the body is not OTLP-JSON logs: {exc}") from exc
    raise UnsupportedContentType(
        f"Content-Type {kind or '(none)'!r} is not supported; use {PROTOBUF} or {JSON}"
    )


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
        for scope_logs in resource_logs.scope_logs:
            keep = []
            for record in scope_logs.log_records:
                problem = record_problem(record)
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

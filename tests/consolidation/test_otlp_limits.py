"""/v1/logs caps what one request holds, not only its bytes: records, resource/scope groups and
attribute/body values, in protobuf and in JSON, each refused whole with a 413 naming the limit
before anything is stored."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from benchmarks.otlp_limits import length_delimited
from stages.common.config import Settings
from stages.consolidation import otlp
from stages.consolidation.app import create_app

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _empty_records_bomb(count: int) -> bytes:
    """ExportLogsServiceRequest{resource_logs{scope_logs{log_records x count}}}, each record an
    empty message: two bytes apiece."""
    return length_delimited(1, length_delimited(2, b"\x12\x00" * count))


def _records(count: int, scopes: int = 1) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for _ in range(scopes):
        scope = resource_logs.scope_logs.add()
        for i in range(count // scopes):
            scope.log_records.add(time_unix_nano=1, body=AnyValue(string_value=f"r{i}"))
    return request


def _status(resp: Any) -> str:
    status = Status()
    status.ParseFromString(resp.content)
    return status.message


def _stored(client: TestClient) -> int:
    return int(client.get("/api/stats").json()["total"])


def test_five_million_empty_records_are_refused_quickly(client: TestClient) -> None:
    body = _empty_records_bomb(5_000_000)
    assert len(body) < otlp.MAX_BODY_BYTES
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    resp = client.post("/v1/logs", content=body, headers=PROTOBUF)
    elapsed = time.monotonic() - started
    assert resp.status_code == 413, resp.status_code
    assert f"the limit is {otlp.MAX_RECORDS} per request" in _status(resp)
    assert _stored(client) == 0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 300, f"peak memory grew by {grown_mib:.0f} MiB"
    assert elapsed < 20, f"{elapsed:.1f} s"


def test_records_over_the_limit_are_refused_in_protobuf_and_json(client: TestClient) -> None:
    over = _records(otlp.MAX_RECORDS + 1, scopes=3)
    resp = client.post("/v1/logs", content=over.SerializeToString(), headers=PROTOBUF)
    assert resp.status_code == 413
    assert str(otlp.MAX_RECORDS) in _status(resp)
    records = [{"body": {"stringValue": "x"}}] * (otlp.MAX_RECORDS + 1)
    as_json = {"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}
    resp = client.post("/v1/logs", content=json.dumps(as_json), headers=JSON)
    assert resp.status_code == 413, resp.text
    assert str(otlp.MAX_RECORDS) in resp.json()["message"]
    assert _stored(client) == 0


def test_the_limit_itself_is_accepted(client: TestClient) -> None:
    at_limit = _records(otlp.MAX_RECORDS, scopes=5)
    resp = client.post("/v1/logs", content=at_limit.SerializeToString(), headers=PROTOBUF)
    assert resp.status_code == 200, _status(resp)
    assert _stored(client) == otlp.MAX_RECORDS


def test_empty_resource_and_scope_groups_count(client: TestClient) -> None:
    resources = b"".join(length_delimited(1, b"") for _ in range(otlp.MAX_GROUPS + 1))
    resp = client.post("/v1/logs", content=resources, headers=PROTOBUF)
    assert resp.status_code == 413
    assert "resourceLogs and scopeLogs" in _status(resp)
    scopes = length_delimited(1, b"\x12\x00" * (otlp.MAX_GROUPS + 1))
    resp = client.post("/v1/logs", content=scopes, headers=PROTOBUF)
    assert resp.status_code == 413
    as_json = {"resourceLogs": [{"scopeLogs": [{}] * (otlp.MAX_GROUPS + 1)}]}
    resp = client.post("/v1/logs", content=json.dumps(as_json), headers=JSON)
    assert resp.status_code == 413, resp.text


def test_attribute_and_nested_value_bombs_are_refused(client: TestClient) -> None:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.attributes.extend(KeyValue(key="k") for _ in range(otlp.MAX_VALUES + 1))
    resp = client.post("/v1/logs", content=request.SerializeToString(), headers=PROTOBUF)
    assert resp.status_code == 413
    assert "attribute and body values" in _status(resp)
    nested = {"arrayValue": {"values": [{"intValue": "1"}] * (otlp.MAX_VALUES + 1)}}
    as_json = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": nested}]}]}]}
    resp = client.post("/v1/logs", content=json.dumps(as_json), headers=JSON)
    assert resp.status_code == 413, resp.text
    assert _stored(client) == 0


def test_an_ordinary_request_still_stores(client: TestClient) -> None:
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(log_records=[LogRecord(body=AnyValue(string_value="hello"))] * 3)
                ]
            )
        ]
    )
    resp = client.post("/v1/logs", content=request.SerializeToString(), headers=PROTOBUF)
    assert resp.status_code == 200
    assert _stored(client) == 3


def test_deeply_nested_values_are_a_400_not_a_crash(client: TestClient) -> None:
    value = b""
    for _ in range(5000):
        value = length_delimited(5, length_delimited(1, value))  # AnyValue.array_value.values[0]
    record = length_delimited(5, value)  # LogRecord.body
    body = length_delimited(1, length_delimited(2, length_delimited(2, record)))
    resp = client.post("/v1/logs", content=body, headers=PROTOBUF)
    assert resp.status_code == 400, resp.status_code
    assert "deep" in _status(resp)


def test_a_request_of_unknown_fields_is_refused_by_count(client: TestClient) -> None:
    """Fields the receiver does not know are skipped, but still counted: five million of them
    (two bytes each) are refused without being walked to the end."""
    body = length_delimited(
        1, b"\x08\x00" * 5_000_000
    )  # ResourceLogs with a repeated unknown varint
    started = time.monotonic()
    resp = client.post("/v1/logs", content=body, headers=PROTOBUF)
    assert resp.status_code == 413, resp.status_code
    assert "protobuf fields" in _status(resp)
    assert time.monotonic() - started < 20

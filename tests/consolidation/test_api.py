"""Log Consolidation through its HTTP API (TestClient): normalisation, OTLP/HTTP, queries."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from stages.common.config import Settings
from stages.common.validation import MAX_RECORD_JSON_BYTES
from stages.consolidation.app import create_app
from tests.support.records import SPAN, TRACE, log_record

JSON = {"Content-Type": "application/json"}

PROTOBUF = "application/x-protobuf"


def _record(i: int, **overrides: Any) -> dict[str, Any]:
    """A log record with every field OTLP maps (source, trace and span ids, typed attributes)."""
    return (
        log_record(
            i,
            event_id=f"evt-{i:08d}",
            source="log-synthesis",
            trace_id=TRACE,
            span_id=SPAN,
            attributes={"http.status_code": 200, "duration_ms": 42.5, "cached": True},
        )
        | overrides
    )


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", **extra)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(tmp_path)), raise_server_exceptions=False) as c:
        yield c


def parse_line_strictly(line: str) -> ExportLogsServiceRequest:
    """OTLP-JSON has hex ids; proto3 JSON wants base64. Convert, then parse with no leniency."""
    data = json.loads(line)
    for resource_logs in data["resourceLogs"]:
        for scope_logs in resource_logs["scopeLogs"]:
            for record in scope_logs["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in record:
                        assert all(c in "0123456789abcdef" for c in record[key]), record[key]
                        record[key] = base64.b64encode(bytes.fromhex(record[key])).decode()
    request = ExportLogsServiceRequest()
    json_format.Parse(json.dumps(data), request, ignore_unknown_fields=False)
    return request


def consolidated_lines(tmp_path: Path) -> list[str]:
    files = sorted((tmp_path / "data" / "consolidated").glob("*.jsonl"))
    return [line for path in files for line in path.read_text().splitlines()]


def test_canonical_batch_becomes_strict_otlp_json(client: TestClient, tmp_path: Path) -> None:
    records = [
        _record(1),
        _record(2, level="ERROR", service="payment-service", host="pay-1", is_anomaly=True,
                anomaly_type="payment_fraud", scenario_id="sc-7"),
        {"timestamp": "2025-11-09T13:24:34.000Z", "kind": "metric", "service": "api-gateway",
         "metric_name": "cpu_percent", "value": 97.5, "unit": "percent"},
        {"timestamp": "2025-11-09T13:24:35.000Z", "kind": "apm", "service": "api-gateway",
         "trace_id": TRACE, "span_id": SPAN, "name": "GET /x", "duration_ms": 12.0,
         "status": "ERROR"},
    ]  # fmt: skip
    resp = client.post("/api/logs/batch", json={"records": records})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 4, "rejected": []}

    lines = consolidated_lines(tmp_path)
    assert len(lines) == 1
    request = parse_line_strictly(lines[0])
    by_service: dict[str, list[LogRecord]] = {}
    for resource_logs in request.resource_logs:
        resource = {kv.key: kv.value.string_value for kv in resource_logs.resource.attributes}
        assert resource["deployment.environment"] == "local"
        for scope_logs in resource_logs.scope_logs:
            assert scope_logs.scope.name in {"log-synthesis", "stages.log-synthesis"}
            by_service.setdefault(resource["service.name"], []).extend(scope_logs.log_records)
    assert sorted(by_service) == ["api-gateway", "payment-service"]
    assert sum(len(v) for v in by_service.values()) == 4
    for log_records in by_service.values():
        for rec in log_records:
            assert 1 <= rec.severity_number <= 24
            assert rec.time_unix_nano > 1_700_000_000 * 10**9
            assert rec.observed_time_unix_nano > 0
            assert len(rec.trace_id) in (0, 16) and len(rec.span_id) in (0, 8)
    fraud = by_service["payment-service"][0]
    assert (fraud.severity_number, fraud.severity_text) == (17, "ERROR")
    assert fraud.trace_id.hex() == TRACE and fraud.span_id.hex() == SPAN
    assert fraud.body.string_value == "Request processed 2"
    attributes = {kv.key: kv.value for kv in fraud.attributes}
    assert attributes["is_anomaly"].bool_value is True
    assert attributes["anomaly_type"].string_value == "payment_fraud"
    assert attributes["event_id"].string_value == "evt-00000002"
    assert attributes["http.status_code"].int_value == 200
    raw = json.loads(lines[0])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert isinstance(raw["timeUnixNano"], str) and raw["traceId"] == TRACE
    apm = [r for r in by_service["api-gateway"] if r.body.string_value.startswith("GET /x")]
    assert apm[0].severity_text == "ERROR"


def test_invalid_canonical_records_are_422_or_partial(client: TestClient) -> None:
    bad = client.post("/api/logs/batch", json={"records": [{"kind": "log"}]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["index"] == 0
    partial = client.post("/api/logs/batch", json={"records": [_record(1), {"kind": "nope"}]})
    assert partial.status_code == 200
    assert partial.json()["accepted"] == 1
    assert partial.json()["rejected"][0]["index"] == 1
    assert client.post("/api/logs/batch", json={"records": [], "x": 1}).status_code == 422
    assert client.post("/api/logs/batch", content=b"{not json", headers=JSON).status_code == 422


def test_a_record_too_large_to_store_is_rejected_alone(client: TestClient) -> None:
    # Under the body limit, over the record limit: the rest of the batch is still stored.
    huge = _record(2) | {"attributes": {"blob": "x" * (MAX_RECORD_JSON_BYTES + 1)}}
    # Quotes double in JSON: 32,000 of them and the blob are over the limit only once escaped.
    escaped = _record(3) | {"message": '"' * 32_000, "attributes": {"blob": "y" * 990_000}}
    resp = client.post("/api/logs/batch", json={"records": [_record(1), huge, escaped]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1
    rejected = resp.json()["rejected"]
    assert [r["index"] for r in rejected] == [1, 2]
    assert all("bytes as JSON" in r["problems"][0] for r in rejected)


def _otlp_request(count: int, *, trace_id: bytes = bytes.fromhex(TRACE)) -> bytes:
    records = [
        LogRecord(
            time_unix_nano=1_762_694_673_120_000_000 + i,
            severity_number=13,
            severity_text="WARN",
            body=AnyValue(string_value=f"otlp message {i}"),
            trace_id=trace_id,
            span_id=bytes.fromhex(SPAN),
        )
        for i in range(count)
    ]
    resource = ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])
    resource.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="checkout"))
    )
    return ExportLogsServiceRequest(resource_logs=[resource]).SerializeToString()


def test_otlp_protobuf_and_json(client: TestClient, tmp_path: Path) -> None:
    resp = client.post(
        "/v1/logs", content=_otlp_request(3), headers={"Content-Type": "application/x-protobuf"}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/x-protobuf"
    answer = ExportLogsServiceResponse()
    answer.ParseFromString(resp.content)
    assert not answer.HasField("partial_success")

    otlp_json = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]
                },
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": "1762694673120000000",
                                "severityNumber": 17,
                                "body": {"stringValue": "json path"},
                                "traceId": TRACE,
                                "spanId": SPAN,
                            }
                        ]
                    }
                ],
            }
        ]
    }
    resp = client.post("/v1/logs", json=otlp_json)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"

    found = client.get("/api/logs", params={"service": "web"}).json()
    assert found["count"] == 1
    assert found["logs"][0]["trace_id"] == TRACE
    assert found["logs"][0]["severity_text"] == "ERROR"
    assert client.get("/api/logs", params={"service": "checkout"}).json()["count"] == 3
    for line in consolidated_lines(tmp_path):
        parse_line_strictly(line)


def test_otlp_partial_success_names_rejected_records(client: TestClient) -> None:
    body = _otlp_request(2, trace_id=b"\x01\x02\x03")
    resp = client.post("/v1/logs", content=body, headers={"Content-Type": "application/x-protobuf"})
    assert resp.status_code == 200
    answer = ExportLogsServiceResponse()
    answer.ParseFromString(resp.content)
    assert answer.partial_success.rejected_log_records == 2
    assert "traceId" in answer.partial_success.error_message
    assert client.get("/api/stats").json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff\xff\xff\xff garbage", "application/x-protobuf", 400),
        (b"{not json", "application/json", 400),
        (b'{"resourceLogs": [], "surprise": 1}', "application/json", 400),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
         "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"hello", "text/plain", 415),
        (b"hello", "", 415),
    ],
)  # fmt: skip
def test_bad_otlp_bodies_are_4xx(
    client: TestClient, body: bytes, content_type: str, status: int
) -> None:
    resp = client.post("/v1/logs", content=body, headers={"Content-Type": content_type})
    assert resp.status_code == status, resp.text
    if content_type == "application/x-protobuf":
        error = Status()
        error.ParseFromString(resp.content)
        assert error.message
    else:
        assert resp.json()["message"]


def test_gzip_otlp_and_oversized_body(client: TestClient) -> None:
    import gzip

    resp = client.post(
        "/v1/logs",
        content=gzip.compress(_otlp_request(2)),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert resp.status_code == 200
    assert client.get("/api/stats").json()["total"] == 2
    big = client.post(
        "/v1/logs",
        content=b"x" * (10 * 1024 * 1024 + 1),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert big.status_code == 413


def test_queries_stats_and_timeline(client: TestClient) -> None:
    records = [
        _record(i, timestamp=f"2025-11-09T13:{i:02d}:00.000Z", level="INFO" if i % 3 else "ERROR")
        for i in range(10)
    ] + [_record(99, service="auth-service", message="Login FAILED for bob", is_anomaly=True,
                 anomaly_type="auth_failure")]  # fmt: skip
    assert client.post("/api/logs/batch", json={"records": records}).status_code == 200

    recent = client.get("/api/logs/recent", params={"limit": 3}).json()
    assert recent["count"] == 3
    assert recent["logs"][0]["body"] == "Login FAILED for bob"
    errors = client.get("/api/logs", params={"severity": "ERROR", "limit": 100}).json()
    assert errors["count"] == 4
    assert {log["severity_text"] for log in errors["logs"]} == {"ERROR"}
    hits = client.get("/api/logs", params={"q": "login failed"}).json()
    assert [log["service"] for log in hits["logs"]] == ["auth-service"]
    anomalous = client.get("/api/logs", params={"anomalous": "true"}).json()
    assert anomalous["count"] == 1

    stats = client.get("/api/stats").json()
    assert stats["total"] == 11 and stats["anomalous"] == 1
    assert stats["by_service"] == {"api-gateway": 10, "auth-service": 1}
    assert stats["by_severity"] == {"INFO": 7, "ERROR": 4}

    timeline = client.get("/api/timeline", params={"bucket_seconds": 300, "buckets": 100}).json()
    assert sum(b["count"] for b in timeline["buckets"]) == 11
    assert timeline["buckets"][0] == {"start": "2025-11-09T13:00:00Z", "count": 5, "anomalous": 0}
    assert sum(b["anomalous"] for b in timeline["buckets"]) == 1

    for params in (
        {"limit": 0},
        {"limit": 100_000},
        {"severity": "LOUD"},
        {"q": "x" * 300},
    ):
        assert client.get("/api/logs", params=params).status_code == 422, params
    assert client.get("/api/timeline", params={"bucket_seconds": 0}).status_code == 422


def test_rotation_keeps_at_most_n_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path, consolidated_file_max_bytes=4096, consolidated_max_files=3)
    with TestClient(create_app(settings)) as client:
        for batch in range(30):
            records = [_record(batch * 10 + i) for i in range(10)]
            assert client.post("/api/logs/batch", json={"records": records}).status_code == 200
        stats = client.get("/api/stats").json()
    files = sorted((tmp_path / "data" / "consolidated").glob("*.jsonl"))
    assert len(files) == 3
    assert stats["files"] == 3 and stats["total"] == 300
    for path in files:
        assert path.stat().st_size <= 4096 * 2
        for line in path.read_text().splitlines():
            parse_line_strictly(line)
    # The newest files survive: the last batch's records are in them.
    assert "Request processed 299" in files[-1].read_text()


def test_batch_body_limit_and_control_token(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = client.post(
        "/api/logs/batch",
        content=b"x" * (10 * 1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    from stages.common.config import get_settings

    monkeypatch.setenv("CONTROL_TOKEN", "s3cret")
    get_settings.cache_clear()
    try:
        refused = client.post(
            "/v1/logs", content=_otlp_request(1), headers={"Content-Type": PROTOBUF}
        )
        allowed = client.post(
            "/v1/logs",
            content=_otlp_request(1),
            headers={"Content-Type": PROTOBUF, "Authorization": "Bearer s3cret"},
        )
    finally:
        get_settings.cache_clear()
    assert refused.status_code == 401
    assert allowed.status_code == 200

import hashlib
from datetime import datetime

import pytest
from pydantic import ValidationError

from stages.common.records import Record, format_timestamp

LOG = {
    "timestamp": "2025-11-09T13:24:33.120Z",
    "kind": "log",
    "service": "api-gateway",
    "level": "INFO",
    "message": "Request processed",
}


def test_a_canonical_log_record_validates_and_keeps_ground_truth_fields() -> None:
    record = Record.model_validate(LOG)
    body = record.to_json_dict()
    assert body["service"] == "api-gateway" and len(body["event_id"]) == 32
    assert body["is_anomaly"] is False and body["scenario_id"] is None


def test_timestamps_are_normalised_to_utc_milliseconds() -> None:
    record = Record.model_validate(LOG | {"timestamp": "2025-11-09T15:24:33.1234+02:00"})
    assert record.timestamp == "2025-11-09T13:24:33.123Z"


@pytest.mark.parametrize(
    "timestamp",
    ["2025-11-09T13:24:33.120Z", "1000-01-01T00:00:00.000Z", "2024-02-29T23:59:59.999Z"],
)
def test_canonical_timestamps_stay_as_formatting_them_again_would(timestamp: str) -> None:
    assert Record.model_validate(LOG | {"timestamp": timestamp}).timestamp == timestamp
    assert format_timestamp(datetime.fromisoformat(timestamp)) == timestamp


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kind": "metric"}, "metric_name"),
        ({"kind": "apm"}, "trace_id"),
        ({"service": "../../etc"}, "service"),
        ({"service": "API Gateway"}, "service"),
        ({"timestamp": "yesterday"}, "RFC 3339"),
        ({"timestamp": "2025-11-09T13:24:33"}, "time zone"),
        ({"timestamp": "2025-13-09T13:24:33.120Z"}, "RFC 3339"),  # canonical shape, no date
        ({"timestamp": "2025-02-30T13:24:33.120Z"}, "RFC 3339"),
        ({"attributes": {"items": [1, 2]}}, "items"),
        ({"trace_id": "x" * 257}, "trace_id"),
        ({"trace_id": "xyz", "attributes": {"trace_id.original": "other"}}, "trace_id.original"),
        ({"anomaly_score": 101}, "anomaly_score"),
        ({"is_anomaly": True}, "anomaly_type"),
        ({"surprise": 1}, "surprise"),
        ({"attributes": {"nested": {"a": 1}}}, "nested"),
        ({"log_type": "../../etc/x"}, "log_type"),
        ({"kind": "metric", "metric_name": "cpu.usage", "value": 1.0}, "needs unit"),
        ({"attributes": {"k" * 129: 1}}, "attribute name too long"),
        ({"attributes": {f"a{i}": i for i in range(65)}}, "at most 64 attributes"),
        ({"attributes": {"ratio": float("nan")}}, "finite number"),
        ({"attributes": {"ratio": float("inf")}}, "finite number"),
        ({"attributes": {"n": 2**63}}, "64-bit signed integer"),  # JSON takes it, OTLP not
        ({"attributes": {"n": -(2**63) - 1}}, "64-bit signed integer"),
        ({"anomaly_score": float("nan")}, "anomaly_score"),
        ({"kind": "metric", "metric_name": "cpu.use", "value": float("inf"), "unit": "%"}, "value"),
    ],
)
def test_invalid_records_are_refused_with_the_reason(change: dict, problem: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Record.model_validate(LOG | change)
    assert problem in str(exc.value)


def test_attribute_integers_take_the_whole_signed_64_bit_range() -> None:
    ends = {"low": -(2**63), "high": 2**63 - 1, "flag": True}
    assert Record.model_validate(LOG | {"attributes": ends}).attributes == ends


# The seed's documented input record, exactly as the seed writes it.
SEED_RECORD = {
    "timestamp": "2025-11-09T13:24:33Z",
    "service": "api-gateway",
    "level": "INFO",
    "message": "Request processed",
    "trace_id": "abc123",
    "source": "log-synthesis",
    "log_type": "api_gateway_log",
    "anomaly_score": 5.2,
}


def test_the_seeds_record_is_a_log_with_its_foreign_trace_id_kept() -> None:
    body = Record.model_validate(SEED_RECORD).to_json_dict()
    assert body["kind"] == "log"
    assert body["timestamp"] == "2025-11-09T13:24:33.000Z"
    assert body["attributes"] == {"trace_id.original": "abc123"}
    assert body["trace_id"] == hashlib.sha256(b"abc123").hexdigest()[:32]
    assert body["anomaly_score"] == 5.2 and body["source"] == "log-synthesis"
    assert (body["service"], body["level"], body["message"], body["log_type"]) == (
        "api-gateway",
        "INFO",
        "Request processed",
        "api_gateway_log",
    )


def test_trace_ids_are_normalised_to_w3c_form() -> None:
    w3c = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert Record.model_validate(LOG | {"trace_id": w3c}).attributes == {}
    upper = Record.model_validate(LOG | {"trace_id": w3c.upper()})
    assert (upper.trace_id, upper.attributes) == (w3c, {})
    assert Record.model_validate(LOG | {"trace_id": ""}).trace_id is None
    # The same foreign id gives the same trace id: records of one trace stay together.
    one = Record.model_validate(LOG | {"trace_id": "req-42", "attributes": {"a": 1}})
    two = Record.model_validate(LOG | {"trace_id": "req-42"})
    assert (
        one.trace_id == two.trace_id != Record.model_validate(LOG | {"trace_id": "req-43"}).trace_id
    )
    assert one.attributes == {"a": 1, "trace_id.original": "req-42"}
    span = {"kind": "apm", "trace_id": "abc123", "span_id": "00f067aa0ba902b7"}
    apm = Record.model_validate(LOG | span | {"name": "GET /", "duration_ms": 3, "status": "OK"})
    assert apm.trace_id == hashlib.sha256(b"abc123").hexdigest()[:32]

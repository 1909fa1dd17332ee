"""Canonical records (one per kind) for tests that send records to a service."""

from __future__ import annotations

from typing import Any

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def log_record(i: int, **overrides: Any) -> dict[str, Any]:
    record = {
        "event_id": f"log-{i:010d}",
        "timestamp": "2025-11-09T13:24:33.120Z",
        "kind": "log",
        "service": "api-gateway",
        "host": "api-gw-2",
        "level": "INFO",
        "message": f"Request processed {i}",
        "log_type": "api_gateway_log",
        "category": "application",
        "attributes": {"http.status_code": 200},
    }
    record.update(overrides)
    return record


def metric_record(i: int, **overrides: Any) -> dict[str, Any]:
    record = {
        "event_id": f"metric-{i:010d}",
        "timestamp": "2025-11-09T13:24:33.120Z",
        "kind": "metric",
        "service": "payment-service",
        "metric_name": "cpu_percent",
        "value": 41.5,
        "unit": "percent",
    }
    record.update(overrides)
    return record


def apm_record(i: int, **overrides: Any) -> dict[str, Any]:
    record = {
        "event_id": f"apm-{i:010d}",
        "timestamp": "2025-11-09T13:24:33.120Z",
        "kind": "apm",
        "service": "account-service",
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "GET /accounts",
        "duration_ms": 12.5,
        "status": "OK",
    }
    record.update(overrides)
    return record


def mixed_batch(count: int, start: int = 0) -> list[dict[str, Any]]:
    makers = (log_record, metric_record, apm_record)
    return [makers[i % 3](start + i) for i in range(count)]

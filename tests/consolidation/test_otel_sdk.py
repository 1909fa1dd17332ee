"""The OpenTelemetry Python SDK's OTLP/HTTP log exporter against a real Log Consolidation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.consolidation.test_api import parse_line_strictly
from tests.support.processes import Process, base_env, free_port, start_service


def start_consolidation(data_dir: Path, log_dir: Path, **env: str) -> tuple[Process, str]:
    port = free_port()
    environment = base_env(
        "http://127.0.0.1:1",
        CONSOLIDATION_PORT=str(port),
        DATA_DIR=str(data_dir),
        DEPLOYMENT_ENVIRONMENT="test",
        **env,
    )
    return start_service("consolidation", environment, log_dir, port, f"consolidation-{port}")


@pytest.fixture
def consolidation(tmp_path: Path, proc_logs: Path) -> Iterator[tuple[str, Path]]:
    proc, url = start_consolidation(tmp_path / "data", proc_logs)
    try:
        yield url, tmp_path / "data"
    finally:
        proc.stop()


def test_sdk_exporter_logs_are_accepted_and_queryable(consolidation: tuple[str, Path]) -> None:
    url, data_dir = consolidation
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", timeout=5)
    provider = LoggerProvider(resource=Resource.create({"service.name": "sdk-demo"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("sdk-demo-test")
    try:
        logger.emit(body="card authorised for order 1", severity_number=SeverityNumber.INFO)
        logger.emit(body="slow downstream call", severity_number=SeverityNumber.WARN)
        logger.emit(
            body="payment declined",
            severity_number=SeverityNumber.ERROR,
            attributes={"order.id": "A-17"},
        )
    finally:
        provider.shutdown()

    logs = httpx.get(f"{url}/api/logs", params={"service": "sdk-demo"}).json()["logs"]
    assert [log["body"] for log in logs] == [
        "payment declined",
        "slow downstream call",
        "card authorised for order 1",
    ]
    assert [log["severity_text"] for log in logs] == ["ERROR", "WARN", "INFO"]
    assert logs[0]["attributes"]["order.id"] == "A-17"
    stats = httpx.get(f"{url}/api/stats").json()
    assert stats["counters"]["otlp_records"] == 3 and stats["counters"]["otlp_rejected"] == 0

    lines = [
        line
        for path in sorted((data_dir / "consolidated").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == 3
    for line in lines:
        request = parse_line_strictly(line)
        resource = {
            kv.key: kv.value.string_value for kv in request.resource_logs[0].resource.attributes
        }
        assert resource["service.name"] == "sdk-demo"


def test_export_to_an_external_otlp_endpoint(tmp_path: Path, proc_logs: Path) -> None:
    """One consolidation process exports to another one's /v1/logs, as to a collector."""
    collector, collector_url = start_consolidation(tmp_path / "collector", proc_logs)
    source, source_url = start_consolidation(
        tmp_path / "source",
        proc_logs,
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"{collector_url}/v1/logs",
    )
    try:
        records = [
            {
                "timestamp": "2025-11-09T13:24:33.120Z",
                "kind": "log",
                "service": "ledger-service",
                "level": "WARN",
                "message": f"exported {i}",
            }
            for i in range(25)
        ]
        resp = httpx.post(f"{source_url}/api/logs/batch", json={"records": records})
        assert resp.status_code == 200

        deadline = time.monotonic() + 15
        while httpx.get(f"{collector_url}/api/stats").json()["total"] < 25:
            assert time.monotonic() < deadline, "the collector did not receive the export"
            time.sleep(0.1)
        received = httpx.get(f"{collector_url}/api/stats").json()
        sent = httpx.get(f"{source_url}/api/stats").json()["counters"]
    finally:
        source.stop()
        collector.stop()
    assert received["total"] == 25
    assert received["by_service"] == {"ledger-service": 25}
    assert received["by_severity"] == {"WARN": 25}
    assert sent["exported"] == 25 and sent["export_failed"] == sent["export_dropped"] == 0

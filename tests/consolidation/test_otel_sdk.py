"""The OpenTelemetry Python SDK's OTLP/HTTP log exporter against a real Log Consolidation."""

from __future__ import annotations

import sys
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
from tests.support.processes import Process, base_env, free_port, wait_http_ok


@pytest.fixture
def consolidation(tmp_path: Path, proc_logs: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    data_dir = tmp_path / "data"
    env = base_env(
        "http://127.0.0.1:1",
        CONSOLIDATION_PORT=str(port),
        DATA_DIR=str(data_dir),
        DEPLOYMENT_ENVIRONMENT="test",
    )
    proc = Process("consolidation", [sys.executable, "-m", "stages.consolidation"], env, proc_logs)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/health", proc)
        yield url, data_dir
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

"""The seed's documented input record, posted with the seed's own curl line, lands in the lake.

Real processes: an emulator, the Kinesis consumer, Log Consolidation and the Ingestion Interface.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import httpx

from stages.common import aws
from stages.common.config import Settings
from tests.support.lake import ConsumerProcess, lake_records
from tests.support.processes import base_env, free_port, start_service

# The seed's record, byte for byte as its curl line sends it.
SEED_BODY = (
    '{"timestamp": "2025-11-09T13:24:33Z", "service": "api-gateway", "level": "INFO", '
    '"message": "Request processed", "trace_id": "abc123", "source": "log-synthesis", '
    '"log_type": "api_gateway_log", "anomaly_score": 5.2}'
)


def _seed_curl(port: int) -> list[str]:
    """The seed's curl line, with the test's port in place of 8004."""
    return [
        "curl", "-s", "-X", "POST", f"http://localhost:{port}/api/ingest",
        "-H", "Content-Type: application/json", "-d", SEED_BODY,
    ]  # fmt: skip


def test_the_seeds_curl_line_lands_in_the_lake_under_its_service(
    endpoint: str, settings: Settings, tmp_path: Path, proc_logs: Path
) -> None:
    consumer = ConsumerProcess(endpoint, proc_logs, FLUSH_MAX_AGE_SECONDS="0.5")
    consolidation_port, ingestion_port = free_port(), free_port()
    env = base_env(
        endpoint,
        DATA_DIR=str(tmp_path / "data"),
        CONSOLIDATION_PORT=str(consolidation_port),
        INGESTION_PORT=str(ingestion_port),
    )
    consolidation, consolidation_url = start_service(
        "consolidation", env, proc_logs, consolidation_port
    )
    ingestion, _ = start_service("ingestion", env, proc_logs, ingestion_port)
    try:
        consumer.wait_healthy()
        answer = subprocess.run(
            _seed_curl(ingestion_port), capture_output=True, text=True, timeout=30
        )
        assert '"accepted":1' in answer.stdout, answer.stdout + answer.stderr

        s3 = aws.client("s3", settings)
        deadline = time.monotonic() + 30
        lines = lake_records(s3, "md-raw-logs")
        while not lines and time.monotonic() < deadline:
            time.sleep(0.3)
            lines = lake_records(s3, "md-raw-logs")
        assert len(lines) == 1, consumer.log_tail()
        line = lines[0]
        assert line.key.startswith("service=api-gateway/year=2025/month=11/day=09/hour=13/")
        derived = hashlib.sha256(b"abc123").hexdigest()[:32]
        assert line.record | {"event_id": None} == {
            "event_id": None,
            "timestamp": "2025-11-09T13:24:33.000Z",
            "kind": "log",
            "service": "api-gateway",
            "level": "INFO",
            "message": "Request processed",
            "trace_id": derived,
            "source": "log-synthesis",
            "log_type": "api_gateway_log",
            "anomaly_score": 5.2,
            "is_anomaly": False,
            "scenario_id": None,
            "anomaly_type": None,
            "attributes": {"trace_id.original": "abc123"},
        }

        # Log Consolidation took it as a valid OTLP record: 32-hex traceId, original kept.
        deadline = time.monotonic() + 15
        while True:
            logs = httpx.get(f"{consolidation_url}/api/logs/recent?limit=5", timeout=5).json()
            if logs["logs"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(logs["logs"]) == 1, logs
        stored = logs["logs"][0]
        assert stored["trace_id"] == derived
        assert stored["attributes"]["trace_id.original"] == "abc123"
    finally:
        ingestion.stop()
        consolidation.stop()
        consumer.stop()

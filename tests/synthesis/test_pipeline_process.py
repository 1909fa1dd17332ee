"""Synthesis forwarding into the real Ingestion Interface (emulator behind it), as processes."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.support.processes import Process, base_env, free_port, wait_http_ok
from tests.synthesis.helpers import anomaly


def test_forwarded_records_are_accepted_by_the_real_ingestion(
    endpoint: str, tmp_path: Path, proc_logs: Path
) -> None:
    ingestion_port, synthesis_port = free_port(), free_port()
    env = base_env(
        endpoint,
        INGESTION_PORT=str(ingestion_port),
        SYNTHESIS_PORT=str(synthesis_port),
        STATE_PORT=str(free_port()),
        CONSOLIDATION_PORT=str(free_port()),
        DATA_DIR=str(tmp_path / "data"),
    )
    ingestion = Process("ingestion", [sys.executable, "-m", "stages.ingestion"], env, proc_logs)
    synthesis = Process("synthesis", [sys.executable, "-m", "stages.synthesis"], env, proc_logs)
    ingestion_url = f"http://127.0.0.1:{ingestion_port}"
    synthesis_url = f"http://127.0.0.1:{synthesis_port}"
    try:
        wait_http_ok(f"{ingestion_url}/health", ingestion)
        wait_http_ok(f"{synthesis_url}/health", synthesis)
        body = {
            "count": 2000,
            "seed": 9,
            "timestamp": "2026-03-02T10:05:00Z",
            "anomaly": anomaly("cpu_spike"),
            "anomalous_share": 0.3,
            "forward": True,
            "return_records": False,
        }
        resp = httpx.post(f"{synthesis_url}/api/synthesize", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["forwarded"] == 2000
        counters = httpx.get(f"{ingestion_url}/api/metrics").json()["counters"]
        assert counters["received"] == counters["accepted"] == 2000, counters
        assert counters["rejected"] == 0 and counters["to_kinesis"] == 2000, counters
    finally:
        synthesis.stop()
        ingestion.stop()

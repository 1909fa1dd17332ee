"""Synthesis forwarding into the real Ingestion Interface (emulator behind it), as processes."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.processes import base_env, free_port, start_service
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
    ingestion, ingestion_url = start_service("ingestion", env, proc_logs, ingestion_port)
    try:
        synthesis, synthesis_url = start_service("synthesis", env, proc_logs, synthesis_port)
    except BaseException:
        ingestion.stop()
        raise
    try:
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

"""The real Pattern Generator process (``python -m stages.patterns``) serves the library."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.processes import base_env, free_port, start_service


def test_the_service_starts_and_evaluates(proc_logs: Path) -> None:
    port = free_port()
    env = base_env("http://127.0.0.1:9", PATTERNS_PORT=str(port))
    proc, _ = start_service("patterns", env, proc_logs, port)
    try:
        resp = httpx.post(
            f"http://127.0.0.1:{port}/api/patterns/evaluate",
            json={
                "composition": {"baseline": 3, "components": [{"kind": "constant", "offset": 1}]},
                "start": "2026-01-05T00:00:00Z",
                "end": "2026-01-05T00:00:02Z",
                "step_seconds": 1,
            },
        )
        assert resp.status_code == 200
        assert resp.json()["values"] == [4, 4, 4]
    finally:
        proc.stop()

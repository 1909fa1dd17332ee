"""The real State Manager process: state survives a restart; concurrent calls stay consistent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.processes import Process, base_env, free_port, start_service


def start_state_manager(data_dir: Path, log_dir: Path, port: int) -> Process:
    env = base_env("http://127.0.0.1:9", DATA_DIR=str(data_dir), STATE_PORT=str(port))
    env.pop("CONTROL_TOKEN", None)
    return start_service("state", env, log_dir, port, name=f"state-{port}")[0]


def test_state_survives_a_restart_and_even_a_kill(tmp_path: Path, proc_logs: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_state_manager(data_dir, proc_logs, port)
    try:
        resp = httpx.post(f"{url}/api/entities/acc-00123/transition", json={"to": "locked"})
        assert resp.status_code == 200
        httpx.post(f"{url}/api/entities", json={"type": "host", "id": "new-host-1"})
        stats_before = httpx.get(f"{url}/api/stats").json()
    finally:
        proc.stop()
    assert (data_dir / "state.db").exists()

    proc = start_state_manager(data_dir, proc_logs, port)
    try:
        assert httpx.get(f"{url}/api/entities/acc-00123").json()["state"] == "locked"
        assert httpx.get(f"{url}/api/entities/new-host-1").json()["type"] == "host"
        assert httpx.get(f"{url}/api/stats").json() == stats_before  # not seeded twice
        httpx.post(f"{url}/api/entities/new-host-1/transition", json={"to": "maintenance"})
    finally:
        proc.kill()

    proc = start_state_manager(data_dir, proc_logs, port)
    try:
        assert httpx.get(f"{url}/api/entities/new-host-1").json()["state"] == "maintenance"
    finally:
        proc.stop()


def test_concurrent_transitions_apply_once(tmp_path: Path, proc_logs: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_state_manager(tmp_path, proc_logs, port)
    try:
        with httpx.Client(base_url=url) as client, ThreadPoolExecutor(16) as pool:

            def lock(entity_id: str) -> int:
                return client.post(
                    f"/api/entities/{entity_id}/transition", json={"to": "locked"}
                ).status_code

            ids = ["acc-00001"] * 40 + [f"usr-{n:05d}" for n in range(1, 41)]
            codes = list(pool.map(lock, ids))
            assert codes == [200] * 80
            history = client.get("/api/entities/acc-00001/history").json()["items"]
            assert [h["to"] for h in history] == ["active", "locked"]
            page = client.get("/api/entities", params={"type": "user", "state": "locked"}).json()
            assert page["total"] == 40
    finally:
        proc.stop()

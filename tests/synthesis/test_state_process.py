"""Synthesis against the real State Manager, both as processes: ids and a locked account."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import base_env, free_port, start_service

LOCKED = [f"acc-{n:05d}" for n in range(1, 41)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    logs = Path(tmp_path_factory.mktemp("state-synthesis"))
    state_port, synthesis_port = free_port(), free_port()
    env = base_env(
        "http://127.0.0.1:1",
        STATE_PORT=str(state_port),
        SYNTHESIS_PORT=str(synthesis_port),
        INGESTION_PORT=str(free_port()),
        DATA_DIR=str(logs / "data"),
    )
    state, state_url = start_service("state", env, logs, state_port)
    try:
        synthesis, synthesis_url = start_service("synthesis", env, logs, synthesis_port)
    except BaseException:
        state.stop()
        raise
    try:
        yield state_url, synthesis_url
    finally:
        synthesis.stop()
        state.stop()


def _wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_ids_and_locked_states_come_from_the_state_manager(fleet: tuple[str, str]) -> None:
    state_url, synthesis_url = fleet
    _wait_for(lambda: httpx.get(f"{synthesis_url}/health").json()["state_manager"] == "ok")
    for account in LOCKED:
        resp = httpx.post(
            f"{state_url}/api/entities/{account}/transition", json={"to": "locked"}, timeout=5
        )
        assert resp.status_code == 200, resp.text

    def locked_logins() -> list[dict[str, Any]]:
        body = {"count": 3000, "seed": 1, "kinds": ["log"], "log_types": ["authentication_log"]}
        records = httpx.post(f"{synthesis_url}/api/synthesize", json=body, timeout=30).json()
        return [r for r in records["records"] if r["attributes"]["account.id"] in LOCKED]

    def all_denied() -> bool:
        records = locked_logins()
        return bool(records) and all(r["attributes"]["outcome"] == "denied" for r in records)

    # The pool refreshes states every ~2 s; one refresh may run while the accounts are being
    # locked and see only some of them, so wait for one that began after the last lock.
    _wait_for(all_denied)
    records = locked_logins()
    assert records
    for record in records:
        assert record["attributes"]["outcome"] == "denied"
        assert record["attributes"]["failure_reason"] == "account_locked"
        assert record["level"] == "WARN"
    assert httpx.get(f"{synthesis_url}/health").json()["entity_source"] == "state-manager"

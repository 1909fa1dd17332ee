"""The orchestrator as a real process (``python -m stages.orchestrator``) with the real State
Manager; a stub stands in for Log Synthesis and records what it was asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.orchestrator.helpers import wait_until
from tests.orchestrator.processes import running
from tests.orchestrator.stubs import Peers


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[str, str, Peers]]:
    with running(tmp_path, "state", "orchestrator") as (urls, peers):
        yield urls["orchestrator"], urls["state"], peers


def test_seed_commands_against_real_processes(
    fleet: tuple[str, str, Peers], tmp_path: Path
) -> None:
    orch, state, peers = fleet
    # curl -X POST http://localhost:8000/api/continuous/start -H "Content-Type: application/json"
    #   -d '{"interval_seconds": 2, "logs_per_interval": 10, "duration_seconds": 60}'
    started = httpx.post(
        f"{orch}/api/continuous/start",
        content='{"interval_seconds": 2, "logs_per_interval": 10, "duration_seconds": 60}',
        headers={"Content-Type": "application/json"},
    )
    assert started.status_code == 200 and started.json()["running"] is True

    trigger = httpx.post(
        f"{orch}/api/anomaly/trigger",
        json={"anomaly_type": "auth_failure", "intensity": 90, "duration_seconds": 60},
    )
    assert trigger.status_code == 200
    effect = trigger.json()["state_effect"]
    assert effect["outcome"] == "applied"
    account = httpx.get(f"{state}/api/entities/{effect['entity_id']}").json()
    assert account["state"] == "locked"

    # The anomaly joins the tick after the trigger, 2 s later; real processes on a loaded
    # machine may take far longer.
    wait_until(lambda: any("anomaly" in r for r in peers.synthesize), timeout=60)
    stats = httpx.post(f"{orch}/api/continuous/stop").json()
    assert stats["running"] is False
    assert stats["records_produced"] == peers.produced() >= 10

    truth = httpx.get(f"{orch}/api/ground-truth").json()
    assert [w["anomaly_type"] for w in truth["items"]] == ["auth_failure"]
    assert truth["items"][0]["target_entity"] == effect["entity_id"]
    assert truth["jsonl_path"] == "ground_truth.jsonl"
    assert (tmp_path / "data" / truth["jsonl_path"]).read_text().count("\n") == 2

"""The orchestrator as a real process (``python -m stages.orchestrator``) with the real State
Manager and Log Synthesis processes; stub peers stand in for what is not under test (synthesis in
the first test, the Ingestion Interface in the second, where they record what arrived)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stages.common.records import Record
from tests.orchestrator.helpers import wait_until
from tests.orchestrator.stubs import Peers, start_peers
from tests.support.processes import Process, base_env, free_port, wait_http_ok


def start_services(
    tmp_path: Path, services: dict[str, int], stub_port: int
) -> tuple[list[Process], dict[str, str]]:
    """Start ``python -m stages.<name>`` for each name; every other peer is the stub."""
    ports = {"state": stub_port, "synthesis": stub_port, "ingestion": stub_port, **services}
    env = base_env(
        "http://127.0.0.1:1",
        DATA_DIR=str(tmp_path / "data"),
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
    )
    env.pop("CONTROL_TOKEN", None)
    procs, urls = [], {}
    try:
        for name, port in services.items():
            proc = Process(name, [sys.executable, "-m", f"stages.{name}"], env, tmp_path)
            procs.append(proc)
            urls[name] = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{urls[name]}/health", proc)
    except Exception:
        for proc in procs:
            proc.stop()
        raise
    return procs, urls


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[str, str, Peers]]:
    peers, server = start_peers()
    services = {"state": free_port(), "orchestrator": free_port()}
    procs, urls = start_services(tmp_path, services, peers.port)
    try:
        yield urls["orchestrator"], urls["state"], peers
    finally:
        for proc in procs:
            proc.stop()
        server.should_exit = True


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[str, str, Peers]]:
    peers, server = start_peers()
    services = {"state": free_port(), "synthesis": free_port(), "orchestrator": free_port()}
    procs, urls = start_services(tmp_path, services, peers.port)
    try:
        yield urls["orchestrator"], urls["state"], peers
    finally:
        for proc in procs:
            proc.stop()
        server.should_exit = True


def test_seed_commands_against_real_processes(fleet: tuple[str, str, Peers]) -> None:
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

    wait_until(lambda: any("anomaly" in r for r in peers.synthesize), timeout=5)
    stats = httpx.post(f"{orch}/api/continuous/stop").json()
    assert stats["running"] is False
    assert stats["records_produced"] == peers.produced() >= 10

    truth = httpx.get(f"{orch}/api/ground-truth").json()
    assert [w["anomaly_type"] for w in truth["items"]] == ["auth_failure"]
    assert truth["items"][0]["target_entity"] == effect["entity_id"]
    assert Path(truth["jsonl_path"]).read_text().count("\n") == 2


def test_labelled_records_from_real_synthesis_fall_inside_their_windows(
    chain: tuple[str, str, Peers],
) -> None:
    orch, state, peers = chain
    body = {"interval_seconds": 0.1, "logs_per_interval": 20, "duration_seconds": 3, "seed": 5}
    assert httpx.post(f"{orch}/api/continuous/start", json=body).status_code == 200
    for anomaly_type in ("auth_failure", "disk_full", "database_slow", "payment_fraud"):
        resp = httpx.post(
            f"{orch}/api/anomaly/trigger",
            json={"anomaly_type": anomaly_type, "intensity": 90, "duration_seconds": 2},
        )
        assert resp.status_code == 200, resp.text
    stats = wait_until(
        lambda: (s := httpx.get(f"{orch}/api/continuous/stats").json())["running"] is False and s
    )
    assert stats["records_produced"] == stats["records_requested"] == 600
    assert stats["records_failed"] == 0 and stats["can_keep_up"] is True

    records = [Record.model_validate(r) for r in peers.ingested]
    assert len(records) == 600
    windows = httpx.get(f"{orch}/api/ground-truth").json()["items"]
    assert {w["anomaly_type"] for w in windows} == {
        "auth_failure", "disk_full", "database_slow", "payment_fraud",
    }  # fmt: skip
    by_scenario = {w["scenario_id"]: w for w in windows}
    labelled = [r for r in records if r.is_anomaly]
    assert labelled, "no anomalous records while four windows were open"
    for record in labelled:
        window = by_scenario[record.scenario_id]
        assert record.anomaly_type == window["anomaly_type"]
        assert window["start"] <= record.timestamp < window["end"], record
        assert record.service in window["services"], record
    assert {r.anomaly_type for r in labelled} == {w["anomaly_type"] for w in windows}
    locked = next(w["target_entity"] for w in windows if w["anomaly_type"] == "auth_failure")
    assert httpx.get(f"{state}/api/entities/{locked}").json()["state"] == "locked"

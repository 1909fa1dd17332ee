"""Ground truth in both directions, through real processes: the orchestrator, Log Synthesis and
the State Manager run as processes; the stub stands in for the Ingestion Interface and keeps
every record synthesis forwarded."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.orchestrator.helpers import wait_until
from tests.orchestrator.processes import running
from tests.orchestrator.scope_check import label_errors, windows_of, with_trace_starts
from tests.orchestrator.stubs import Peers

# Synthesis re-reads the State Manager every 2 s, plus the time a refresh takes (one may be
# under way when a run ends, and both take longer on a loaded machine): two periods and slack
# make sure a whole refresh began and ended after the last change.
STATE_SETTLE_SECONDS = 5.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Peers]]:
    # one fleet for the module: starting three processes costs more than the tests themselves
    with running(tmp_path_factory.mktemp("chain"), "state", "synthesis", "orchestrator") as (
        urls,
        peers,
    ):
        yield urls["orchestrator"], peers


@pytest.fixture
def chain(fleet: tuple[str, Peers]) -> tuple[str, Peers]:
    """The module's fleet with nothing ingested yet and no generator running."""
    orch, peers = fleet
    httpx.post(f"{orch}/api/continuous/stop", timeout=60)
    with peers.lock:
        peers.ingested.clear()
    return fleet


def _windows_since(orch: str, moment: str) -> list[dict[str, Any]]:
    items = httpx.get(f"{orch}/api/ground-truth", params={"limit": 1000}).json()["items"]
    return [w for w in items if w["start"] >= moment]


def _trigger(orch: str, anomaly_type: str, **body: Any) -> dict[str, Any]:
    resp = httpx.post(
        f"{orch}/api/anomaly/trigger", json={"anomaly_type": anomaly_type, **body}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["window"]


def _wait_for_the_generator(orch: str) -> dict[str, Any]:
    def stopped() -> Any:
        stats = httpx.get(f"{orch}/api/continuous/stats").json()
        return stats if stats["running"] is False else None

    return wait_until(stopped, timeout=60, step=0.2)


def test_records_in_a_window_scope_are_labelled_with_it_and_no_others_are(
    chain: tuple[str, Peers],
) -> None:
    orch, peers = chain
    # Half-second ticks: a tick's records are stamped up to half a second ahead, so windows
    # opened meanwhile must not start before them (the planning horizon).
    body = {"interval_seconds": 0.5, "logs_per_interval": 200, "duration_seconds": 5, "seed": 5}
    started = httpx.post(f"{orch}/api/continuous/start", json=body)
    assert started.status_code == 200
    time.sleep(1.25)
    _trigger(orch, "cpu_spike", target="payment-service", intensity=100, duration_seconds=2)
    _trigger(orch, "disk_full", target="payment-2", intensity=90, duration_seconds=2)
    _trigger(orch, "auth_failure", intensity=90, duration_seconds=2)
    # an execution's window must label the generator's background records too
    execution = httpx.post(
        f"{orch}/api/scenarios/database_slow--payments-db/execute",
        json={"duration_seconds": 2, "intensity": 80, "rate": 40},
    ).json()
    stats = _wait_for_the_generator(orch)
    wait_until(
        lambda: (
            httpx.get(f"{orch}/api/executions/{execution['id']}").json()["status"] == "completed"
        ),
        timeout=60,
    )
    produced = stats["records_produced"] + 80
    assert stats["records_failed"] == 0
    records = wait_until(lambda: len(got := _by_event_id(peers)) >= produced and got, timeout=60)
    assert len(records) == produced

    windows = _windows_since(orch, started.json()["started_at"])
    assert sorted(w["anomaly_type"] for w in windows) == [
        "auth_failure", "cpu_spike", "database_slow", "disk_full",
    ]  # fmt: skip
    assert all(w["end"] is not None for w in windows)
    assert label_errors(windows, records) == []
    timed = with_trace_starts(records)
    for window in windows:
        inside = [r for r in timed if window in windows_of(windows, r)]
        assert {r["kind"] for r in inside} == {"log", "metric", "apm"}, window["scenario_id"]
    # the host rule has something to decide: payment-service records from other hosts than
    # the full disk's, inside its window, are not labelled with it
    disk = next(w for w in windows if w["anomaly_type"] == "disk_full")
    siblings = [
        r
        for r in records
        if r["service"] == "payment-service"
        and r["host"] != "payment-2"
        and disk["start"] <= r["timestamp"] < disk["end"]
    ]
    assert siblings and all(r["scenario_id"] != disk["scenario_id"] for r in siblings)


def test_cpu_spike_metric_rises_far_above_baseline_then_returns(chain: tuple[str, Peers]) -> None:
    orch, peers = chain
    body = {
        "interval_seconds": 0.1,
        "logs_per_interval": 60,
        "duration_seconds": 10,
        "seed": 3,
        "services": ["payment-service"],
    }
    assert httpx.post(f"{orch}/api/continuous/start", json=body).status_code == 200
    time.sleep(2.5)
    window = _trigger(
        orch, "cpu_spike", target="payment-service", intensity=100, duration_seconds=3
    )
    _wait_for_the_generator(orch)
    window = next(w for w in _windows_since(orch, window["start"]) if w["id"] == window["id"])
    wait_until(lambda: peers.ingested, timeout=60)
    cpu = sorted(
        (r["timestamp"], r["value"])
        for r in peers.ingested
        if r.get("metric_name") == "cpu.utilization" and r["service"] == "payment-service"
    )
    before = [v for t, v in cpu if t < window["start"]]
    inside = [(t, v) for t, v in cpu if window["start"] <= t < window["end"]]
    after = [v for t, v in cpu if t >= window["end"]]
    assert len(before) >= 8 and len(after) >= 8 and inside
    baseline, spread = statistics.mean(before), statistics.pstdev(before)
    peak_at, peak = max(inside, key=lambda p: p[1])
    assert peak > baseline + 3 * spread and peak > 2 * baseline  # gaussian_spike, 35 % -> ~90 %
    assert window["start"] < peak_at < window["end"]
    assert abs(statistics.mean(after) - baseline) < 3 * spread
    assert max(after) < baseline + 0.25 * (peak - baseline)


def _by_event_id(peers: Peers) -> list[dict[str, Any]]:
    """What ingestion got, one record per event id; a re-sent copy must equal its original."""
    with peers.lock:
        ingested = list(peers.ingested)
    unique: dict[str, dict[str, Any]] = {}
    for record in ingested:
        assert unique.setdefault(record["event_id"], record) == record
    return list(unique.values())


def _all_scenarios(orch: str) -> list[dict[str, Any]]:
    page = httpx.get(f"{orch}/api/scenarios", params={"limit": 500}).json()
    assert page["total"] == len(page["items"]) >= 200
    return page["items"]


def _run_briefly(orch: str, scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every scenario for one second at 40 records/s, all of them carrying the anomaly, as
    many at once as the orchestrator allows (16 workers, each waiting for its execution to end
    before starting the next). A client per worker: a new one per call costs more CPU than
    the orchestrator spends answering."""
    clients: list[httpx.Client] = []
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=orch, timeout=30)
            clients.append(local.http)
        return local.http

    def run(index: int) -> dict[str, Any]:
        http = client()
        resp = http.post(
            f"/api/scenarios/{scenarios[index]['id']}/execute",
            json={"duration_seconds": 1, "rate": 40, "anomalous_share": 1.0, "seed": index},
        )
        assert resp.status_code == 201, resp.text
        url = f"/api/executions/{resp.json()['id']}"
        time.sleep(1)  # its duration: no point asking before
        return wait_until(
            lambda: (e := http.get(url).json())["status"] == "completed" and e,
            timeout=60,
            step=0.2,
        )

    try:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(run, range(len(scenarios))))
    finally:
        for http in clients:
            http.close()


def test_every_scenario_runs_and_labels_its_declared_services_and_log_types(
    chain: tuple[str, Peers],
) -> None:
    orch, peers = chain
    scenarios = _all_scenarios(orch)
    executions = {e["scenario_id"]: e for e in _run_briefly(orch, scenarios)}
    assert all(e["records_failed"] == 0 for e in executions.values())
    produced = sum(e["logs_generated"] for e in executions.values())
    assert produced == 40 * len(scenarios)
    records = wait_until(lambda: len(got := _by_event_id(peers)) >= produced and got, timeout=60)
    # Exactly the records produced: a retried call must not make a second set (new ids). A
    # chunk synthesis re-sent to ingestion is the same records again, which the lake drops.
    assert len(records) == produced

    windows = {
        w["id"]: w
        for w in httpx.get(f"{orch}/api/ground-truth", params={"limit": 10_000}).json()["items"]
    }
    labelled: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        labelled.setdefault(record["scenario_id"], []).append(record)
    problems = []
    for scenario in scenarios:
        window = windows[executions[scenario["id"]]["window_id"]]
        mine = labelled.get(scenario["id"], [])
        declared_logs = {e["log_type"] for e in scenario["log_types"]}
        declared_metrics = {s["metric"] for s in scenario["signals"]}
        seen = {
            "anomaly types": {r["anomaly_type"] for r in mine},
            "services": {r["service"] for r in mine},
            "log types": {r["log_type"] for r in mine if r["kind"] == "log"},
            "metrics": {r["metric_name"] for r in mine if r["kind"] == "metric"},
        }
        expected = {
            "anomaly types": {scenario["anomaly_type"]},
            "services": set(window["services"]),
            "log types": declared_logs,
            "metrics": declared_metrics,
        }
        problems += [
            f"{scenario['id']} {what}: {sorted(seen[what])} != {sorted(expected[what])}"
            for what in expected
            if seen[what] != expected[what]
        ]
        if window["services"][0] != scenario["target"]["services"][0]:
            problems.append(f"{scenario['id']}: window does not start with the target service")
    assert problems == []
    assert label_errors(list(windows.values()), records) == []


def _without_ids_and_times(records: list[dict[str, Any]]) -> list[str]:
    """The records without what may differ: event ids, timestamps, and what metric values
    derive from their timestamps (the daily cycle, noise keyed by time, and their scores)."""

    def timeless(record: dict[str, Any]) -> str:
        drop = {"event_id", "timestamp"}
        if record["kind"] == "metric":
            drop |= {"value", "anomaly_score"}
        return json.dumps({k: v for k, v in record.items() if k not in drop})

    return sorted(timeless(r) for r in records)


def test_same_seed_same_records_labels_included(chain: tuple[str, Peers]) -> None:
    orch, peers = chain
    body = {
        "interval_seconds": 0.1,
        "logs_per_interval": 20,
        "duration_seconds": 1,
        "anomaly_rate": 0.3,
        "seed": 11,
    }
    runs = []
    # The first run's anomalies change the State Manager (a locked account, a degraded
    # service), which the records reflect; the same effects change nothing afterwards, so
    # runs two and three start from the same state (synthesis reads it every ~2 s).
    for run in range(3):
        if run:  # the first run is not compared: only the later ones need the settled state
            time.sleep(STATE_SETTLE_SECONDS)
        with peers.lock:
            peers.ingested.clear()
        assert httpx.post(f"{orch}/api/continuous/start", json=body).status_code == 200
        stats = _wait_for_the_generator(orch)
        assert stats["records_produced"] == 200 and stats["anomalies_started"] > 0
        records = wait_until(lambda: len(got := _by_event_id(peers)) >= 200 and got, timeout=60)
        assert len(records) == 200
        runs.append(_without_ids_and_times(records))
    assert runs[1] == runs[2]
    assert any('"is_anomaly": true' in r for r in runs[2])

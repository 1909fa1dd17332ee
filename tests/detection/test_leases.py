"""Detection scaled out: real detection processes splitting six services by lease.

One scenario (module fixture), with a real emulator subprocess and features rows written with
pyiceberg as the ETL would:

1. two processes start; they split the six services three and three, and score 120 buckets;
2. a third process joins: the services are handed over until each process holds two, then 20
   more buckets are scored; a spike on ``payment-service`` opens an event;
3. the process holding ``payment-service`` is killed (SIGKILL) while the event is open; the two
   others take its services over once its leases expire, then score 35 more buckets in which
   the event closes.

The tests check what an operator would: who owns what, the points scored over all processes
against the number of buckets, the SQS messages of the event, the events API of every process,
and the last score against an uninterrupted run of the library.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.named_lease import read_all
from stages.detection.checkpoint import CheckpointStore
from stages.detection.ensemble import ServiceEnsemble
from stages.detection.events_table import ANOMALIES_TABLE
from stages.etl.features import ensure_features_table
from stages.etl.tables import open_catalog
from tests.detection.support import cpu_and_latency, drain_alerts, metric_rows, prometheus_value
from tests.support.processes import Process, base_env, free_port, start_emulator, wait_http_ok

SPIKED = "payment-service"
SERVICES = (
    "api-gateway",
    "auth-service",
    "fraud-detection",
    "notification-service",
    SPIKED,
    "user-service",
)
SERIES = "cpu=metric:cpu.utilization:mean,latency=metric:latency.p95:mean"
START = datetime(2026, 12, 2, 6, 0, tzinfo=UTC).timestamp()
WIDTH = 10
TWO = 120  # buckets scored by the first two processes
THREE = 140  # ... then by three
TOTAL = 175  # ... then by the two left after the kill
SPIKE = range(125, 145)
LEASE_SECONDS = 6.0
INTERVAL_SECONDS = 0.5


def _values(i: int, service: str) -> dict[str, float]:
    return cpu_and_latency(i, service, spiked=service == SPIKED and i in SPIKE)


def _rows(first: int, last: int) -> pa.Table:
    points = []
    for service in SERVICES:
        for i in range(first, last):
            start = datetime.fromtimestamp(START + i * WIDTH, UTC)
            values = _values(i, service)
            points += [
                (service, "cpu.utilization", start, values["cpu"]),
                (service, "latency.p95", start, values["latency"]),
            ]
    return metric_rows(points, WIDTH)


def _iso(bucket: int) -> str:
    moment = datetime.fromtimestamp(START + bucket * WIDTH, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Detector:
    name: str
    proc: Process
    url: str
    metrics: str = ""  # the last /metrics read

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/status", timeout=10).json()

    def scrape(self) -> str:
        self.metrics = httpx.get(f"{self.url}/metrics", timeout=10).text
        return self.metrics

    def counter(self, name: str) -> float:
        return prometheus_value(self.metrics, f"detection_{name}_total")


def _spawn(endpoint: str, logs: Path, name: str) -> Detector:
    port = free_port()
    env = base_env(
        endpoint,
        DETECTION_PORT=str(port),
        DETECTION_INTERVAL_SECONDS=str(INTERVAL_SECONDS),
        DETECTION_SERIES=SERIES,
        # Every round with new buckets is checkpointed: a kill loses nothing scored.
        DETECTION_CHECKPOINT_SECONDS="0",
        DETECTION_LEASE_SECONDS=str(LEASE_SECONDS),
        DETECTION_WORKER_ID=name,
        RUN_DIR=str(logs / "run"),
        DATA_DIR=str(logs / "data"),
    )
    proc = Process(name, [sys.executable, "-m", "stages.detection"], env, logs)
    return Detector(name, proc, f"http://127.0.0.1:{port}")


def _healthy(detector: Detector) -> None:
    wait_http_ok(f"{detector.url}/health", detector.proc, timeout=90)


def _logs(detectors: list[Detector]) -> str:
    return "\n".join(f"--- {d.name}\n{d.proc.log_tail(25)}" for d in detectors)


def _owners(detectors: list[Detector]) -> dict[str, list[str]]:
    """Service -> the processes that say they own it."""
    owners: dict[str, list[str]] = {}
    for detector in detectors:
        assert detector.proc.alive(), _logs(detectors)
        for service in detector.status()["owned_services"]:
            owners.setdefault(service, []).append(detector.name)
    return owners


def _wait_split(detectors: list[Detector], each: int, timeout: float = 60.0) -> float:
    """Until every service is owned by exactly one process, ``each`` per process; seconds."""
    began = time.monotonic()
    deadline = began + timeout
    owners: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        owners = _owners(detectors)
        counts = {d.name: 0 for d in detectors}
        for names in owners.values():
            for name in names:
                counts[name] += 1
        if (
            set(owners) == set(SERVICES)
            and all(len(names) == 1 for names in owners.values())
            and set(counts.values()) == {each}
        ):
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"services not split {each} each: {owners}\n{_logs(detectors)}")


def _wait_scored(
    settings: Settings, detectors: list[Detector], bucket: int, timeout: float = 120.0
) -> None:
    """Until every service's checkpoint holds ``bucket`` and the owners report it."""
    store = CheckpointStore(aws.client("s3", settings), "md-models")
    deadline = time.monotonic() + timeout
    marks: dict[str, Any] = {}
    while time.monotonic() < deadline:
        marks = {}
        for service in SERVICES:
            saved = store.load(service)
            marks[service] = saved.mark if saved is not None else None
        if all(m == START + bucket * WIDTH for m in marks.values()):
            reported = {}
            for detector in detectors:
                for service, item in detector.status()["services"].items():
                    reported[service] = item["mark"]
            if reported == dict.fromkeys(SERVICES, _iso(bucket)):
                return
        time.sleep(0.3)
    raise AssertionError(f"bucket {bucket} not checkpointed: {marks}\n{_logs(detectors)}")


@dataclass
class Scenario:
    settings: Settings
    first: list[Detector] = field(default_factory=list)  # the two that start
    joined: Detector | None = None
    victim: Detector | None = None
    survivors: list[Detector] = field(default_factory=list)
    split_two: dict[str, list[str]] = field(default_factory=dict)
    split_three: dict[str, list[str]] = field(default_factory=dict)
    points_two: list[float] = field(default_factory=list)  # per process, after phase 1
    points_three: list[float] = field(default_factory=list)  # per process, after phase 2
    victim_services: list[str] = field(default_factory=list)
    takeover_seconds: float = 0.0
    balance_seconds: float = 0.0  # from the third process healthy to two services each
    open_before_kill: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_point: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    leases_after: list[Any] = field(default_factory=list)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    logs = tmp_path_factory.mktemp("detection-leases")
    emulator, endpoint = start_emulator(logs)
    running: list[Detector] = []
    try:
        settings = Settings(aws_endpoint_url=endpoint)
        state = Scenario(settings)
        table = ensure_features_table(open_catalog(settings, name="writer"))
        sqs = aws.client("sqs", settings)
        queue_url = sqs.get_queue_url(QueueName=resources.alert_queues(settings).queue)["QueueUrl"]
        # One bucket first: the services exist, the two processes split them, then the rest.
        table.append(_rows(0, 1))
        state.first = [_spawn(endpoint, logs, "detect-a"), _spawn(endpoint, logs, "detect-b")]
        running += state.first
        for detector in state.first:
            _healthy(detector)
        _wait_split(state.first, 3)
        state.split_two = _owners(state.first)
        table.append(_rows(1, TWO))
        _wait_scored(settings, state.first, TWO - 1)
        state.points_two = [d.scrape() and d.counter("points_scored") for d in state.first]

        state.joined = _spawn(endpoint, logs, "detect-c")
        running.append(state.joined)
        _healthy(state.joined)
        everyone = [*state.first, state.joined]
        state.balance_seconds = _wait_split(everyone, 2)
        state.split_three = _owners(everyone)
        table.append(_rows(TWO, THREE))
        _wait_scored(settings, everyone, THREE - 1)
        for detector in everyone:
            state.open_before_kill[detector.name] = httpx.get(
                f"{detector.url}/api/anomalies", params={"state": "open"}
            ).json()
        state.points_three = [d.scrape() and d.counter("points_scored") for d in everyone]

        (owner,) = state.split_three[SPIKED]
        state.victim = next(d for d in everyone if d.name == owner)
        state.victim_services = sorted(
            s for s, names in state.split_three.items() if owner in names
        )
        state.survivors = [d for d in everyone if d is not state.victim]
        state.victim.proc.kill()  # no shutdown code runs: its leases just stop being renewed
        killed = time.monotonic()
        _wait_split(state.survivors, 3)
        state.takeover_seconds = time.monotonic() - killed
        table.append(_rows(THREE, TOTAL))
        _wait_scored(settings, state.survivors, TOTAL - 1)
        time.sleep(2 * INTERVAL_SECONDS)  # the round's deliveries follow its checkpoints
        for detector in state.survivors:
            detector.scrape()
            statuses = detector.status()["services"]
            if SPIKED in statuses:
                state.last_point = statuses[SPIKED]["last_point"]
        state.health = {
            d.name: httpx.get(f"{d.url}/health", timeout=10).json() for d in state.survivors
        }
        state.messages = drain_alerts(sqs, queue_url)
        state.leases_after = read_all(
            aws.client("dynamodb", settings), settings.detection_lease_table
        )
        # The figures docs/ quote (shown with `pytest -s`).
        print(
            f"\ndetection leases: third process balanced in {state.balance_seconds:.1f} s, "
            f"services of the killed process taken over in {state.takeover_seconds:.1f} s "
            f"(lease {LEASE_SECONDS:g} s, interval {INTERVAL_SECONDS:g} s)"
        )
        yield state
    finally:
        for detector in running:
            detector.proc.stop()
        emulator.stop()


def test_two_processes_split_the_services_and_score_each_bucket_once(scenario: Scenario) -> None:
    assert sorted(scenario.split_two) == sorted(SERVICES)
    assert all(len(names) == 1 for names in scenario.split_two.values())
    # Both did work, and together scored each of the 6 x 120 buckets exactly once.
    assert all(points > 0 for points in scenario.points_two), scenario.points_two
    assert sum(scenario.points_two) == len(SERVICES) * TWO


def test_a_third_process_takes_its_share_by_hand_over_without_rescoring(
    scenario: Scenario,
) -> None:
    assert scenario.joined is not None
    assert sorted(scenario.split_three) == sorted(SERVICES)
    assert all(len(names) == 1 for names in scenario.split_three.values())
    # The hand-overs were checkpointed first: no bucket was scored twice.
    assert sum(scenario.points_three) == len(SERVICES) * THREE
    joined_points = scenario.points_three[-1]
    assert joined_points == 2 * (THREE - TWO), "the joining process scored its own two services"


def test_every_process_answers_for_every_service(scenario: Scenario) -> None:
    # Before the kill, the event of payment-service was open; all three processes listed it,
    # though only one of them held payment-service.
    lists = scenario.open_before_kill
    assert set(lists) == {"detect-a", "detect-b", "detect-c"}
    ids = {name: [e["id"] for e in events] for name, events in lists.items()}
    assert len(set(map(tuple, ids.values()))) == 1, ids
    (event_id,) = ids["detect-a"]
    assert event_id == f"{SPIKED}@{round((START + SPIKE.start * WIDTH) * 1000)}"
    for detector in scenario.survivors:
        events = httpx.get(f"{detector.url}/api/anomalies", params={"service": SPIKED}).json()
        assert [(e["id"], e["state"]) for e in events] == [(event_id, "closed")]
        one = httpx.get(f"{detector.url}/api/anomalies/{event_id}")
        assert one.status_code == 200 and one.json()["end"] == _iso(SPIKE.stop - 1)
    # Feedback given to one process is what the other one answers.
    first, second = scenario.survivors
    given = httpx.post(
        f"{first.url}/api/anomalies/{event_id}/feedback", json={"verdict": "true_positive"}
    )
    assert given.status_code == 200, given.text
    deadline = time.monotonic() + 10
    feedback = None
    while time.monotonic() < deadline and feedback is None:
        feedback = httpx.get(f"{second.url}/api/anomalies/{event_id}").json()["feedback"]
        time.sleep(0.3)
    assert feedback is not None and feedback["verdict"] == "true_positive"


def test_a_killed_process_s_services_are_taken_over_from_their_checkpoints(
    scenario: Scenario,
) -> None:
    assert scenario.victim is not None and not scenario.victim.proc.alive()
    # Its lease runs out, a survivor's lease round (every second) takes it, and the next
    # detection round loads the checkpoint; slack for a loaded machine.
    assert scenario.takeover_seconds < LEASE_SECONDS + INTERVAL_SECONDS + 6.0
    victim_points = scenario.points_three[[*scenario.first, scenario.joined].index(scenario.victim)]
    total = victim_points + sum(d.counter("points_scored") for d in scenario.survivors)
    assert total == len(SERVICES) * TOTAL
    assert sum(d.counter("points_discarded") for d in scenario.survivors) == 0
    assert sum(d.counter("checkpoint_conflicts") for d in scenario.survivors) == 0
    for detector in scenario.survivors:
        assert prometheus_value(detector.metrics, "detection_owned_services") == 3
    # The killed process's two services, each taken over from an expired lease.
    taken_after = sum(d.counter("leases_taken") for d in scenario.survivors)
    assert taken_after >= len(scenario.victim_services)
    owners = {s.name: s.owner for s in scenario.leases_after}
    assert set(owners) == set(SERVICES)
    assert scenario.victim.name not in owners.values()

    # payment-service went on from the checkpoint: its last score is the one an uninterrupted
    # run of the library gives over the same buckets, to the last bit.
    ensemble = ServiceEnsemble(SPIKED, ["cpu", "latency"])
    for i in range(TOTAL):
        point = ensemble.update(START + i * WIDTH, _values(i, SPIKED))
    assert scenario.last_point["timestamp"] == _iso(TOTAL - 1)
    assert scenario.last_point["score"] == point.decision.score
    assert scenario.last_point["scores"] == {s: r.decision.score for s, r in point.signals.items()}


def test_the_open_event_is_alerted_once_and_resolved_once(scenario: Scenario) -> None:
    event_id = f"{SPIKED}@{round((START + SPIKE.start * WIDTH) * 1000)}"
    actions = [m["action"] for m in scenario.messages if m["event"]["id"] == event_id]
    assert actions.count("open") == 1, actions
    assert actions.count("close") == 1, actions
    assert actions[0] == "open" and actions[-1] == "close"
    assert {m["event"]["service"] for m in scenario.messages} == {SPIKED}
    # SQS would hide a resend within its deduplication window; the lake table would not: each
    # transition was delivered by one process only.
    table = open_catalog(scenario.settings, name="reader").load_table(ANOMALIES_TABLE)
    rows = [(r["event_id"], r["action"]) for r in table.scan().to_arrow().to_pylist()]
    assert sorted(rows) == sorted((event_id, action) for action in actions)


def test_health_and_status_say_what_each_process_owns(scenario: Scenario) -> None:
    owned: list[str] = []
    for detector in scenario.survivors:
        health = scenario.health[detector.name]
        assert health["status"] == "healthy"
        assert health["worker_id"] == detector.name
        assert len(health["owned_services"]) == 3
        owned += health["owned_services"]
        status = detector.status()
        assert status["owned_services"] == health["owned_services"]
        assert status["leases"]["table"] == "stage04-detection-leases"
        assert status["leases"]["live_processes"] == 2
        assert sorted(status["services"]) == health["owned_services"]
    assert sorted(owned) == sorted(SERVICES)
    joined = scenario.joined
    assert joined is not None
    if joined in scenario.survivors:
        # Its two services came by hand-over from live processes.
        assert joined.counter("leases_stolen") == 2

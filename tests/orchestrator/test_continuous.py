"""Continuous generation against the stub synthesis server: API contract, pacing, backlog,
anomaly folding and determinism."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from stages.orchestrator.clients import SynthesisOutcome, SynthesisRequest
from stages.orchestrator.continuous import (
    MAX_TICKS_IN_FLIGHT,
    ContinuousConfig,
    ContinuousGenerator,
    plan_requests,
    tick_groups,
)
from stages.orchestrator.ground_truth import GroundTruth, scope_for
from stages.orchestrator.scenario_catalogue import ScenarioCatalogue
from tests.orchestrator.helpers import wait_until
from tests.orchestrator.stubs import Peers

SEED_BODY = {"interval_seconds": 2, "logs_per_interval": 10, "duration_seconds": 60}


def test_seed_body_start_409_stop_and_stats(client: TestClient, peers: Peers) -> None:
    # The seed body's rate (5/s), in ticks far enough apart that the stop surely comes before
    # the second one on a loaded machine (with the seed's 2 s, a stall could let it in).
    body = SEED_BODY | {"interval_seconds": 20, "logs_per_interval": 100}
    started = client.post("/api/continuous/start", json=body)
    assert started.status_code == 200
    assert started.json()["running"] is True
    assert started.json()["requested_rate"] == 5.0

    again = client.post("/api/continuous/start", json=SEED_BODY)
    assert again.status_code == 409
    assert "already running" in again.json()["message"]

    wait_until(lambda: peers.produced() == 100)
    stopped = client.post("/api/continuous/stop").json()
    assert stopped["running"] is False
    assert stopped["records_produced"] == 100 == stopped["records_requested"]
    assert stopped["ticks"] == 1
    stats = client.get("/api/continuous/stats").json()
    assert stats["running"] is False and stats["records_produced"] == 100
    # A new start is allowed once stopped.
    assert client.post("/api/continuous/start", json=SEED_BODY).status_code == 200
    client.post("/api/continuous/stop")


def test_unknown_and_out_of_bounds_fields_are_422(client: TestClient) -> None:
    for body in (
        SEED_BODY | {"logs_per_second": 5},
        SEED_BODY | {"interval_seconds": 0.01},
        SEED_BODY | {"logs_per_interval": 10_001},
        SEED_BODY | {"duration_seconds": 86_401},
        SEED_BODY | {"anomaly_rate": 1.5},
        SEED_BODY | {"services": ["no-such-service"]},
        SEED_BODY | {"log_types": ["../../etc/passwd"]},
        {"logs_per_interval": 10},
    ):
        resp = client.post("/api/continuous/start", json=body)
        assert resp.status_code == 422, body
    assert client.get("/api/continuous/stats").json()["running"] is False


def test_measured_rate_matches_200_per_second(client: TestClient, peers: Peers) -> None:
    body = {"interval_seconds": 0.05, "logs_per_interval": 10, "duration_seconds": 5}
    assert client.post("/api/continuous/start", json=body).status_code == 200
    stats = wait_until(
        lambda: (s := client.get("/api/continuous/stats").json())["running"] is False and s,
        timeout=10,
    )
    assert stats["records_produced"] == 1000 == peers.produced()
    # Within 10 %: a loaded machine may start the first or end the last tick a few tenths of
    # a second late; a burst or a wrong pace is off by far more.
    assert abs(stats["measured_rate"] - 200) <= 20
    assert abs(stats["measured_rate_recent"] - 200) <= 20
    assert stats["can_keep_up"] is True and stats["ticks_skipped"] == 0
    # Delivery was paced, not bursted: ~5 s between the first and last call.
    times = [r["received_at"] for r in peers.synthesize]
    assert 4.5 <= times[-1] - times[0] <= 5.5


def test_slow_synthesis_is_reported_as_falling_behind(client: TestClient, peers: Peers) -> None:
    # 1 s per call, at most 10 ticks (0.5 s of schedule) per call: it loses 0.5 s per call.
    peers.delay_seconds = 1.0
    body = {"interval_seconds": 0.05, "logs_per_interval": 5}
    client.post("/api/continuous/start", json=body)

    def behind_with_a_catch_up_call() -> Any:
        stats = client.get("/api/continuous/stats").json()
        caught_up = any(r["count"] > 5 for r in peers.synthesize)
        return stats if stats["ticks_behind"] > 0 and caught_up else None

    # ~2.5 s on an idle machine; polled, as a loaded one may take longer to get there.
    stats = wait_until(behind_with_a_catch_up_call, timeout=30)
    stopped = client.post("/api/continuous/stop").json()
    assert stats["can_keep_up"] is False
    assert stats["ticks_behind"] > 0
    assert stats["measured_rate"] < 0.95 * stats["requested_rate"]
    # The backlog is produced in bigger calls (catch-up), bounded per call.
    counts = [r["count"] for r in peers.synthesize]
    assert max(counts) > 5 and max(counts) <= 50
    assert stopped["records_produced"] == peers.produced()


def test_anomaly_rate_folds_windows_into_records(client: TestClient, peers: Peers) -> None:
    body = {
        "interval_seconds": 0.1, "logs_per_interval": 10, "duration_seconds": 1,
        "anomaly_rate": 1, "seed": 7,
    }  # fmt: skip
    client.post("/api/continuous/start", json=body)
    stats = wait_until(
        lambda: (s := client.get("/api/continuous/stats").json())["running"] is False and s
    )
    assert stats["anomalies_started"] == 10
    windows = client.get("/api/ground-truth").json()["items"]
    assert len(windows) == 10
    assert all(w["source"] == "continuous" and w["end"] is not None for w in windows)
    anomalous = [r for r in peers.synthesize if "anomaly" in r]
    assert anomalous
    assert {r["anomaly"]["scenario_id"] for r in anomalous} <= {w["scenario_id"] for w in windows}
    assert stats["records_produced"] == 100


def _signature(requests: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["count"], r.get("seed"), r.get("anomaly", {}).get("scenario_id"), r.get("services"))
        for r in requests
    ]


def test_same_seed_same_synthesis_requests_even_when_behind(
    client: TestClient, peers: Peers
) -> None:
    body = {
        "interval_seconds": 0.1, "logs_per_interval": 7, "duration_seconds": 1,
        "anomaly_rate": 0.3, "seed": 42, "services": ["payment-service", "auth-service"],
    }  # fmt: skip
    runs = []
    # The second run falls behind (even with MAX_TICKS_IN_FLIGHT calls at once) and catches up.
    for delay in (0.0, 0.35):
        peers.synthesize.clear()
        peers.delay_seconds = delay
        client.post("/api/continuous/start", json=body)
        stats = wait_until(
            lambda: (s := client.get("/api/continuous/stats").json())["running"] is False and s,
            timeout=20,
        )
        # Calls of different ticks overlap, so they may arrive in another order: the same calls.
        runs.append(sorted(_signature(peers.synthesize), key=repr))
    assert stats["max_ticks_behind"] > 1
    assert runs[0] == runs[1]
    assert len({seed for _, seed, _, _ in runs[0]}) == len(runs[0])  # a new seed per call
    assert any(scenario for _, _, scenario, _ in runs[0])


def test_catch_up_merges_ticks_only_without_a_seed() -> None:
    assert tick_groups(False, 4, 3) == [(4, 3)]
    assert tick_groups(True, 4, 3) == [(4, 1), (5, 1), (6, 1)]


def test_plan_splits_big_ticks_and_derives_seeds() -> None:
    config = ContinuousConfig(interval_seconds=1, logs_per_interval=10_000, seed=1)
    now = datetime.now(UTC)
    first = plan_requests(config, 3, 1, now, [])
    assert [r.count for r in first] == [5000, 5000]
    assert [r.seed for r in first] == [r.seed for r in plan_requests(config, 3, 1, now, [])]
    assert first[0].seed != plan_requests(config, 4, 1, now, [])[0].seed
    catch_up = plan_requests(config, 3, 2, now, [])
    assert sum(r.count for r in catch_up) == 20_000 and catch_up[0].spread_seconds == 2
    unseeded = ContinuousConfig(interval_seconds=1, logs_per_interval=1)
    assert plan_requests(unseeded, 0, 1, now, [])[0].seed is None


def test_backlog_beyond_its_bound_is_skipped_and_counted(
    client: TestClient, peers: Peers, monkeypatch: Any
) -> None:
    monkeypatch.setattr("stages.orchestrator.continuous.MAX_BACKLOG_TICKS", 12)
    peers.delay_seconds = 1.0
    client.post("/api/continuous/start", json={"interval_seconds": 0.05, "logs_per_interval": 5})
    # ~2 s on an idle machine; polled, as a loaded one may take longer to get there.
    wait_until(lambda: client.get("/api/continuous/stats").json()["ticks_skipped"] > 0, 30)
    stats = client.post("/api/continuous/stop").json()
    assert stats["ticks_skipped"] > 0
    assert stats["records_skipped"] == 5 * stats["ticks_skipped"]
    assert stats["records_produced"] == stats["records_requested"] == peers.produced()
    assert stats["can_keep_up"] is False


def test_plan_gives_each_open_window_a_part_from_its_own_services(tmp_path: Path) -> None:
    catalogue = ScenarioCatalogue()
    scenario = catalogue.get("database_slow--ledger-db")
    other = catalogue.get("cpu_spike--auth-service")
    assert scenario is not None and other is not None
    truth = GroundTruth(tmp_path / "gt.jsonl")
    scope = scope_for(scenario, {})
    window = truth.open_window(
        scenario, intensity=100, duration_seconds=10, source="trigger", scope=scope
    )
    execution = truth.open_window(
        other, intensity=50, duration_seconds=10, source="execution:x", scope=scope_for(other, {})
    )
    config = ContinuousConfig(
        interval_seconds=1, logs_per_interval=11, services=("api-gateway",), log_types=("cdn_log",)
    )
    background, anomalous = plan_requests(
        config, 0, 1, datetime.now(UTC), [window], [window, execution]
    )
    assert (background.count, anomalous.count) == (6, 5)
    assert background.anomaly is None and background.services == ("api-gateway",)
    assert background.log_types == ("cdn_log",)
    assert anomalous.services == ("ledger-service",) and anomalous.log_types is None
    assert anomalous.anomaly is not None
    assert anomalous.anomaly.scenario_id == "database_slow--ledger-db"
    assert anomalous.anomaly.target_entity == "ledger-db"
    assert anomalous.anomalous_share == 0.5
    assert anomalous.anomaly.scope == window.scope
    # every call knows the other windows, so records in their scope get labelled
    assert [w.scenario_id for w in background.windows] == [window.scenario_id, other.id]
    assert [w.scenario_id for w in anomalous.windows] == [other.id]


class _SlowSynthesis:
    """Answers every call after ``seconds``, noting how many calls overlap."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def synthesize(self, request: SynthesisRequest, stop: threading.Event) -> SynthesisOutcome:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        return SynthesisOutcome(requested=request.count, produced=request.count)


def test_slow_calls_overlap_up_to_the_bound_and_all_records_count(tmp_path: Path) -> None:
    synthesis = _SlowSynthesis(0.3)  # three ticks' worth: one call at a time would fall behind
    generator = ContinuousGenerator(
        synthesis,  # type: ignore[arg-type]
        GroundTruth(tmp_path / "gt.jsonl"),
        [],
        lambda *args: None,  # type: ignore[arg-type,return-value]
    )
    generator.start(
        ContinuousConfig(interval_seconds=0.1, logs_per_interval=10, duration_seconds=1, seed=3)
    )
    stats = wait_until(lambda: (s := generator.stats()).running is False and s, timeout=10)
    assert synthesis.most == MAX_TICKS_IN_FLIGHT
    assert stats.records_produced == stats.records_requested == 100
    assert stats.measured_rate > 60  # serial calls would give ~33/s


IDLE_STATS = {
    "running": False,
    "started_at": None,
    "can_keep_up": True,
    "elapsed_seconds": 0.0,
    "config": None,
    "requested_rate": 0.0,
    "measured_rate": 0.0,
    "measured_rate_recent": 0.0,
    "records_requested": 0,
    "records_produced": 0,
    "records_failed": 0,
    "records_skipped": 0,
    "synthesis_calls": 0,
    "synthesis_retries": 0,
    "last_error": None,
    "ticks": 0,
    "ticks_behind": 0,
    "max_ticks_behind": 0,
    "ticks_skipped": 0,
    "anomalies_started": 0,
    "anomalies_skipped": 0,
    "active_anomalies": [],
}


def test_stats_answer_echoes_the_config_and_lists_open_windows(
    client: TestClient, peers: Peers
) -> None:
    assert client.get("/api/continuous/stats").json() == IDLE_STATS
    assert client.post("/api/continuous/stop").json() == IDLE_STATS
    body = {
        "interval_seconds": 0.5,
        "logs_per_interval": 5,
        "duration_seconds": 30,
        "anomaly_rate": 0,
        "seed": 7,
        "services": ["payment-service", "auth-service"],
        "log_types": ["api_gateway_log"],
    }
    started = client.post("/api/continuous/start", json=body).json()
    assert started.keys() == IDLE_STATS.keys()
    assert started["running"] is True
    assert started["config"] == body
    assert started["requested_rate"] == 10.0
    assert datetime.fromisoformat(started["started_at"]) <= datetime.now(UTC)
    assert started["started_at"].endswith("Z") and len(started["started_at"]) == 24

    trigger = {"anomaly_type": "cpu_spike", "target": "payment-service", "duration_seconds": 60}
    window = client.post("/api/anomaly/trigger", json=trigger).json()["window"]
    wait_until(lambda: peers.produced() >= 10)
    stats = client.get("/api/continuous/stats").json()
    assert stats["active_anomalies"] == [window]
    assert stats["records_produced"] >= 10 and stats["synthesis_calls"] >= 2
    assert stats["measured_rate"] > 0 and stats["elapsed_seconds"] > 0

    stopped = client.post("/api/continuous/stop").json()
    assert stopped["running"] is False and stopped["config"] == body
    assert stopped["records_produced"] == stopped["records_requested"] == peers.produced()
    # The generator closes the windows it was feeding when it stops.
    assert stopped["active_anomalies"] == []

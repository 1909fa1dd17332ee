"""History runs: the seeded plan, the API's validation, and a run against the stub peers."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stages.orchestrator.clients import MAX_SYNTHESIS_COUNT
from stages.orchestrator.history import (
    HistoryConfig,
    ScheduledWindow,
    chunk_requests,
    plan_chunks,
    plan_windows,
    planned_records,
)
from stages.orchestrator.scenario_catalogue import ScenarioCatalogue
from tests.orchestrator.helpers import wait_until
from tests.orchestrator.stubs import Peers

CATALOGUE = ScenarioCatalogue()
START = datetime(2026, 3, 1, tzinfo=UTC)


def _scenario(anomaly_type: str, service: str) -> str:
    return next(
        s.id for s in CATALOGUE.for_type(anomaly_type) if s.target.primary_service == service
    )


def _plan(config: HistoryConfig) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """The windows, and every call of every chunk as (timestamp, count, grid, seed)."""
    windows = plan_windows(config, CATALOGUE.get, CATALOGUE.all())  # type: ignore[arg-type]
    calls = [
        (r.timestamp, r.count, r.grid_records, r.seed)
        for chunk in plan_chunks(config)
        for r in chunk_requests(config, chunk, [])
    ]
    return [(w.scenario.id, w.start, w.end, w.intensity) for w in windows], calls


def test_a_seeded_plan_is_the_same_twice_and_another_seed_changes_it() -> None:
    config = HistoryConfig(
        start=START, end=START + timedelta(days=7), seed=1, rate_per_day=4,
        services=("payment-service", "auth-service"),
    )  # fmt: skip
    first, again = _plan(config), _plan(config)
    assert first == again
    windows, calls = first
    assert 14 <= len(windows) <= 50  # about 4 a day over 7 days
    other_windows, _ = _plan(HistoryConfig(**{**config.__dict__, "seed": 2}))
    assert other_windows != windows
    # windows never overlap and stay inside the range, on the history's services only
    for (_, _, end, _), (_, start, _, _) in itertools.pairwise(windows):
        assert end < start
    assert all(w[1] >= START and w[2] <= config.end for w in windows)
    services = {CATALOGUE.get(w[0]).target.primary_service for w in windows}  # type: ignore[union-attr]
    assert services <= {"payment-service", "auth-service"}
    # every step of the week is on the grid once, and no call is above the synthesis bound
    assert sum(grid for _, _, grid, _ in calls) == 7 * 8640 * config.series_count()
    assert all(count + grid <= MAX_SYNTHESIS_COUNT for _, count, grid, _ in calls)
    assert len({seed for *_, seed in calls}) == len(calls)


def test_normal_only_ranges_get_no_windows() -> None:
    quiet = (START + timedelta(days=1), START + timedelta(days=2))
    config = HistoryConfig(
        start=START, end=START + timedelta(days=3), seed=3, rate_per_day=20,
        services=("payment-service",), normal_only_ranges=(quiet,),
    )  # fmt: skip
    windows = plan_windows(config, CATALOGUE.get, CATALOGUE.all())  # type: ignore[arg-type]
    assert windows
    assert not [w for w in windows if w.start < quiet[1] and quiet[0] < w.end]


def test_a_schedule_is_planned_as_given() -> None:
    scenario = _scenario("cpu_spike", "payment-service")
    at = START + timedelta(hours=1)
    config = HistoryConfig(
        start=START, end=START + timedelta(hours=2), seed=0,
        schedule=(ScheduledWindow(scenario, at, 300, 80),),
    )  # fmt: skip
    (window,) = plan_windows(config, CATALOGUE.get, CATALOGUE.all())  # type: ignore[arg-type]
    assert (window.scenario.id, window.start, window.end, window.intensity) == (
        scenario,
        at,
        at + timedelta(seconds=300),
        80.0,
    )
    chunks = plan_chunks(config)
    assert planned_records(config, chunks, [window]) == 720 * (config.series_count() + 20) + 60


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z", "days": None},
            "must be after start",
        ),
        ({"days": 40}, "at most 31"),
        (
            {"end": "2999-01-01T00:00:00Z", "start": "2998-12-31T00:00:00Z", "days": None},
            "in the future",
        ),
        ({"days": 1, "start": "2026-03-01T00:00:00Z"}, "not both"),
        ({"days": None}, "give start and end"),
        (
            {
                "anomalies": {
                    "schedule": [{"scenario_id": "no-such", "start": "2026-03-01T00:00:00Z"}]
                }
            },
            "unknown scenario",
        ),
        ({"anomalies": {"rate_per_day": 1, "schedule": []}}, None),
        ({"resolution_seconds": 0.5}, None),
        ({"services": ["no-such-service"]}, None),
        ({"start": "2026-03-01T00:00:00", "end": "2026-03-02T00:00:00Z", "days": None}, None),
        ({"surprise": 1}, None),
    ],
)
def test_invalid_history_requests_are_422_with_a_reason(
    client: TestClient, change: dict[str, Any], message: str | None
) -> None:
    body = {"days": 1, "services": ["payment-service"]} | change
    body = {k: v for k, v in body.items() if v is not None}
    resp = client.post("/api/history", json=body)
    assert resp.status_code == 422, resp.text
    if message:
        assert message in resp.json()["message"]


def test_a_scheduled_window_outside_the_range_or_its_services_is_422(client: TestClient) -> None:
    scenario = _scenario("cpu_spike", "payment-service")
    end = _now()
    start = end - timedelta(hours=1)
    base = {"start": start.isoformat(), "end": end.isoformat(), "services": ["auth-service"]}
    inside = {"scenario_id": scenario, "start": (start + timedelta(minutes=5)).isoformat()}
    resp = client.post("/api/history", json=base | {"anomalies": {"schedule": [inside]}})
    assert resp.status_code == 422 and "not among the history's services" in resp.json()["message"]
    late = inside | {"start": (end - timedelta(seconds=10)).isoformat()}
    resp = client.post(
        "/api/history",
        json=base | {"services": ["payment-service"], "anomalies": {"schedule": [late]}},
    )
    assert resp.status_code == 422 and "does not fit" in resp.json()["message"]
    assert client.get("/api/history/nope").status_code == 404


def test_a_run_sends_the_range_through_synthesis_and_records_its_windows(
    client: TestClient, peers: Peers, settings: Any
) -> None:
    scenario = _scenario("cpu_spike", "payment-service")
    end = _now().replace(minute=0, second=0)
    start = end - timedelta(hours=2)
    at = start + timedelta(minutes=30)
    body = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "services": ["payment-service"],
        "seed": 5,
        "anomalies": {
            "schedule": [{"scenario_id": scenario, "start": at.isoformat(), "duration_s": 600}]
        },
    }
    # The run lasts long enough to meet a second start, even if a loaded machine is slow to
    # send it (0.2 s was within reach of one slow round trip); only the calls in flight
    # before the reset below are slowed.
    peers.delay_seconds = 1.0
    started = client.post("/api/history", json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    second = client.post("/api/history", json=body)
    assert second.status_code == 409 and "already generating" in second.json()["message"]
    peers.delay_seconds = 0.0

    def finished() -> Any:
        run = client.get(f"/api/history/{run_id}").json()
        return run if run["status"] != "running" else None

    run = wait_until(finished, timeout=30)
    assert run["status"] == "completed", run
    assert run["records_accepted"] == run["records_requested"] == run["records_planned"]
    assert run["records_failed"] == 0 and run["chunks_done"] == run["chunks_total"]
    assert run["generated_until"] == end.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    calls = peers.synthesize
    assert calls and all(c["timestamp"] >= start.strftime("%Y-%m-%dT%H:%M:%S") for c in calls)
    grid_calls = [c for c in calls if "series" in c]
    assert sum(c["spread_seconds"] for c in grid_calls) == pytest.approx(7200)
    window_calls = [c for c in calls if "anomaly" in c]
    assert window_calls and all(c["anomaly"]["scenario_id"] == scenario for c in window_calls)

    (window,) = run["windows"]
    assert window["start"] == at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert window["end"] == (at + timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    listed = client.get("/api/ground-truth").json()["items"]
    assert [w["id"] for w in listed if w["source"] == f"history:{run_id}"] == [window["id"]]
    lines = (Path(settings.data_dir) / "ground_truth.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines if window["id"] in line]
    assert events == ["opened", "closed"]


def test_a_window_across_chunks_is_recorded_once_and_every_record_counted(
    client: TestClient,
) -> None:
    end = _now()
    start = end - timedelta(hours=8)
    # one metric and two logs per step: 1,666 steps per call, so the first chunk ends
    # 16,660 s in; the window starts between two milliseconds and runs across that end
    at = start + timedelta(seconds=16_500, microseconds=500)
    scenario = _scenario("cpu_spike", "payment-service")
    body = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "services": ["payment-service"],
        "metrics": ["cpu.utilization"],
        "seed": 3,
        "anomalies": {
            "schedule": [{"scenario_id": scenario, "start": at.isoformat(), "duration_s": 605}]
        },
    }
    started = client.post("/api/history", json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]

    def finished() -> Any:
        run = client.get(f"/api/history/{run_id}").json()
        return run if run["status"] != "running" else None

    run = wait_until(finished, timeout=60)
    assert run["status"] == "completed", run
    assert run["chunks_total"] == 2
    assert run["windows_planned"] == len(run["windows"]) == 1
    listed = [
        w
        for w in client.get("/api/ground-truth").json()["items"]
        if w["source"] == f"history:{run_id}"
    ]
    assert len(listed) == 1
    assert run["records_accepted"] == run["records_requested"] == run["records_planned"]


def test_a_stopped_run_says_how_far_it_got(client: TestClient, peers: Peers) -> None:
    end = _now()
    body = {"start": (end - timedelta(days=2)).isoformat(), "end": end.isoformat(), "seed": 9}
    peers.delay_seconds = 0.3
    started = client.post("/api/history", json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    wait_until(lambda: client.get(f"/api/history/{run_id}").json()["chunks_done"] >= 1, 30)
    stopped = client.post(f"/api/history/{run_id}/stop")
    peers.delay_seconds = 0.0
    assert stopped.status_code == 200
    run = stopped.json()
    assert run["status"] == "stopped"
    assert 1 <= run["chunks_done"] < run["chunks_total"]
    assert run["generated_until"] < run["end"]
    assert run["records_accepted"] == run["records_requested"] < run["records_planned"]
    assert client.get("/api/history").json()["items"][0]["id"] == run_id


def _run_to_the_end(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    started = client.post("/api/history", json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]

    def finished() -> Any:
        run = client.get(f"/api/history/{run_id}").json()
        return run if run["status"] != "running" else None

    return wait_until(finished, timeout=60)


def test_backpressure_is_retried_and_what_still_fails_is_counted(
    client: TestClient, peers: Peers
) -> None:
    end = _now()
    body = {
        "start": (end - timedelta(hours=1)).isoformat(),
        "end": end.isoformat(),
        "services": ["auth-service"],
        "seed": 2,
    }
    peers.fail_next = 2  # synthesis answers 503 (ingestion pushing back) twice
    run = _run_to_the_end(client, body)
    assert run["status"] == "completed", run
    assert run["synthesis_retries"] == 2 and run["records_failed"] == 0
    assert run["records_accepted"] == run["records_planned"]

    peers.reject_after = 100  # ingestion refuses the rest of one call as invalid
    run = _run_to_the_end(client, body | {"seed": 3})
    assert run["status"] == "failed"
    assert run["records_failed"] == run["records_planned"] - run["records_accepted"] > 0
    assert run["errors"] and run["errors"][0].startswith("ingestion_rejected")

"""The detection scoreboard: the join of events with windows on hand-made cases, and a --quick run
end to end (its shape, the same scoreboard for the same seed, publishing to a real emulator)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import benchmarks.common
from benchmarks.detection.cli import SCOREBOARD_KEY, main
from benchmarks.detection.history import Layout, schedule
from benchmarks.detection.scoring import GRACE_SECONDS, Event, join
from stages.common import resources
from stages.common.aws import client
from stages.common.config import Settings
from stages.orchestrator.ground_truth import Window, WindowScope
from stages.orchestrator.scenario_catalogue import ScenarioCatalogue

T0 = datetime(2026, 3, 3, tzinfo=UTC)


def _window(start_s: float, end_s: float, services: tuple[str, ...] = ("svc-a",)) -> Window:
    scope = WindowScope(logs=(), metrics=(("latency.p95", services[:1]),), apm=services[:1])
    start, end = T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s)
    return Window(
        id=f"w{start_s:g}",
        scenario_id="sc",
        anomaly_type="cpu_spike",
        services=services,
        metrics=("latency.p95",),
        target_entity=None,
        start=start,
        planned_end=end,
        end=end,
        intensity=70.0,
        ramp_seconds=0.0,
        source="test",
        scope=scope,
    )


def _event(service: str, start_s: float, end_s: float, opened_s: float) -> Event:
    t0 = T0.timestamp()
    return Event(service, t0 + start_s, t0 + end_s, t0 + opened_s)


def test_join_counts_matches_misses_false_positives_and_false_alarms() -> None:
    windows = [_window(1000, 1060), _window(5000, 5060), _window(9000, 9060, ("svc-b",))]
    test_range = (T0.timestamp(), T0.timestamp() + 20_000)
    normal_range = (test_range[1], test_range[1] + 86_400)
    events = [
        _event("svc-a", 1010, 1100, 1040),  # first window, 40 s after its start
        _event("svc-a", 1060 + GRACE_SECONDS - 10, 1200, 1200),  # within the grace: no FP
        _event("svc-a", 9000, 9050, 9030),  # third window's time, wrong service: FP
        _event("svc-b", 8990, 9100, 9020),  # third window; starts before it
        _event("svc-a", 15_000, 15_100, 15_030),  # nothing there: FP
        _event("svc-a", 30_000, 30_100, 30_030),  # the normal-only day: a false alarm
    ]
    j = join(events, windows, windows, test_range, normal_range)
    assert (j.windows, j.detected) == (3, 2)
    assert (j.events, j.matched_events, j.false_alarms) == (5, 3, 1)
    assert j.precision() == 0.6
    assert j.recall() == round(2 / 3, 4)
    assert sorted(j.ttd) == [20.0, 40.0]
    assert j.per_window["w5000"] is None
    assert {e.start - T0.timestamp() for e in j.fp_events} == {9000, 15_000}


def _strip(board: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in board.items() if k not in ("generated_at", "timings")}


def test_the_seed_chooses_the_windows_over_many_anomaly_types() -> None:
    catalogue = ScenarioCatalogue()
    one, again, other = (schedule(Layout(), seed, catalogue) for seed in (1, 1, 2))
    assert one == again != other
    assert len(one) == 30
    assert len({catalogue.get(w.scenario_id).anomaly_type for w in one}) == 30  # type: ignore[union-attr]
    starts = [w.start for w in one]
    assert starts == sorted(starts)
    assert Layout().test_start <= starts[0] and starts[-1] < Layout().normal_start


def test_quick_run_has_the_scoreboard_shape_is_the_same_for_the_same_seed_and_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path / "results")
    assert main(["--quick", "--seed", "7"]) == 0
    (path,) = (tmp_path / "results").glob("detection-*.json")
    first = json.loads(path.read_text())

    assert {"seed", "generated_at", "days", "targets", "met", "overall", "per_type",
            "per_detector", "invisible"} <= set(first)  # fmt: skip
    assert first["seed"] == 7
    assert set(first["overall"]) >= {
        "precision", "recall", "f1", "ttd_p50_s", "ttd_p90_s",
        "false_alarms_per_service_day", "windows", "events",
    }  # fmt: skip
    assert len(first["windows"]) == 3
    assert sum(row["windows"] for row in first["per_type"]) == 3
    for row in first["per_type"]:
        assert set(row) >= {
            "anomaly_type", "observable", "windows", "detected", "recall", "precision",
            "ttd_p50_s",
        }  # fmt: skip
        assert 0 <= row["detected"] <= row["windows"]
    invisible = {row["anomaly_type"] for row in first["invisible"]}
    assert invisible == {row["anomaly_type"] for row in first["per_type"] if not row["observable"]}
    assert all(row["reason"] for row in first["invisible"])
    detectors = {row["detector"] for row in first["per_detector"]}
    assert {"ensemble", "robust_z", "iqr", "seasonal", "spectral_residual", "rcf"} <= detectors
    assert first["history"]["records"] > 0
    assert first["history"]["quarantined"] == 0

    # The same seed again, published to the models bucket of a real emulator.
    monkeypatch.setattr("benchmarks.detection.cli.get_settings", lambda: settings)
    out = tmp_path / "again.json"
    assert main(["--quick", "--seed", "7", "--out", str(out), "--publish"]) == 0
    again = json.loads(out.read_text())
    assert _strip(first) == _strip(again)
    s3 = client("s3", settings)
    body = s3.get_object(Bucket=resources.models_bucket(settings), Key=SCOREBOARD_KEY)["Body"]
    assert json.loads(body.read()) == again

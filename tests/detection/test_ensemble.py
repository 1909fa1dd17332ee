"""The wired ensemble: a series or a service end to end, deterministic, resumable from state."""

from __future__ import annotations

import numpy as np
import pytest

from stages.detection.detectors import parse_rules
from stages.detection.ensemble import SeriesEnsemble, ServiceEnsemble
from tests.detection import synthetic
from tests.detection.test_detectors import correlated


def run(ensemble: SeriesEnsemble, series: synthetic.Labelled, start: int = 0, stop=None) -> list:
    return [
        ensemble.update(float(t), float(v))
        for t, v in zip(series.timestamps[start:stop], series.values[start:stop], strict=True)
    ]


def test_a_level_shift_is_one_event_starting_at_the_shift() -> None:
    series = synthetic.level_shift()
    results = run(SeriesEnsemble("svc/latency"), series)
    changes = [c for r in results for c in r.changes]
    opened = [c.event for c in changes if c.action == "open"]
    assert len(opened) == 1
    assert opened[0].start == series.timestamps[series.start]
    assert opened[0].series == "svc/latency"
    assert not any(r.decision.anomalous for r in results[: series.start])
    scores = np.array([r.decision.score for r in results])
    assert scores[series.start : series.end].max() > scores[: series.start].max()


def test_the_same_input_gives_the_same_output() -> None:
    series = synthetic.variance_change()
    first = [(r.scores, r.decision) for r in run(SeriesEnsemble(), series)]
    second = [(r.scores, r.decision) for r in run(SeriesEnsemble(), series)]
    assert first == second


def test_a_restart_from_bytes_scores_exactly_like_an_uninterrupted_run() -> None:
    series = synthetic.off_season(days=4)
    cut = series.start + 4  # inside the incident: the open event must survive too
    uninterrupted = SeriesEnsemble("s")
    expected = run(uninterrupted, series)
    before = SeriesEnsemble("s")
    run(before, series, stop=cut)
    assert before.tracker.open_event is not None
    restored = SeriesEnsemble.from_bytes(before.to_bytes())
    after = run(restored, series, start=cut)
    assert after == expected[cut:]
    assert [c.action for r in after for c in r.changes].count("open") == 0
    assert [c.action for r in expected for c in r.changes].count("open") == 1


def test_state_of_another_version_is_refused() -> None:
    state = SeriesEnsemble().state()
    state["version"] = 0
    with pytest.raises(ValueError, match="another release"):
        SeriesEnsemble.from_state(state)


def test_rules_vote_on_the_signal_they_name() -> None:
    rules = parse_rules("error_rate > 0.05 for 3 points")
    ensemble = SeriesEnsemble("svc/error_rate", signal_type="error_rate", rules=rules)
    other = SeriesEnsemble("svc/cpu", signal_type="cpu", rules=rules)
    assert "rules" in ensemble.scorer.detectors
    assert "rules" not in other.scorer.detectors
    results = [ensemble.update(float(i), 0.1) for i in range(3)]
    assert [r.decision.anomalous for r in results] == [False, False, True]
    assert results[-1].decision.voters == ("rules",)


def test_a_service_event_names_the_signals_and_the_multivariate_vote() -> None:
    data = correlated(n=1200)
    start, end = 1000, 1020
    data[start:end, 1] = 2.0 * (200.0 - data[start:end, 0])
    service = ServiceEnsemble("payments", ["load", "latency"])
    points = [
        service.update(synthetic.T0 + 10.0 * i, {"load": row[0], "latency": row[1]})
        for i, row in enumerate(data)
    ]
    opened = [c.event for p in points for c in p.changes if c.action == "open"]
    assert len(opened) == 1
    assert synthetic.T0 + 10.0 * start <= opened[0].start <= synthetic.T0 + 10.0 * (start + 3)
    assert "latency" in opened[0].signals
    assert "multivariate" in opened[0].voters
    assert not any(p.decision.anomalous for p in points[300:start])


def test_a_service_resumes_from_state_and_checks_its_input() -> None:
    data = correlated(n=400)
    service = ServiceEnsemble("payments", ["load", "latency"])
    for i, row in enumerate(data[:300]):
        service.update(float(i), {"load": row[0], "latency": row[1]})
    restored = ServiceEnsemble.from_bytes(service.to_bytes())
    rest = [(float(i), {"load": r[0], "latency": r[1]}) for i, r in enumerate(data[300:], 300)]
    assert [restored.update(*p) for p in rest] == [service.update(*p) for p in rest]
    partial = service.update(400.0, {"load": 100.0})
    assert partial.multivariate is None
    assert set(partial.signals) == {"load"}
    with pytest.raises(ValueError, match="unknown signals for payments: cpu"):
        service.update(401.0, {"cpu": 1.0})
    with pytest.raises(ValueError, match="no values for payments"):
        service.update(402.0, {})
    with pytest.raises(ValueError, match="distinct"):
        ServiceEnsemble("x", ["a", "a"])

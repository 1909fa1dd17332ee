"""Weighted voting with a quorum, per signal type, and the hysteresis that makes one incident one
event."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from stages.detection.decision import Decision, DecisionEngine, VotingPolicy
from stages.detection.events import EventTracker, severity

QUIET = {"robust_z": 0.1, "iqr": 0.0, "seasonal": 0.2, "spectral_residual": 0.1, "rcf": 0.1}


def with_votes(**scores: float) -> dict[str, float]:
    return {**QUIET, **scores}


def test_default_quorum_needs_two_votes_or_one_of_a_double_weight() -> None:
    policy = VotingPolicy()
    assert not policy.decide(QUIET).anomalous
    one = policy.decide(with_votes(rcf=0.9))
    assert not one.anomalous
    assert one.voters == ("rcf",)
    two = policy.decide(with_votes(rcf=0.9, iqr=0.7))
    assert two.anomalous
    assert two.voters == ("iqr", "rcf")
    assert two.support == pytest.approx(2 / 6)
    seasonal = policy.decide(with_votes(seasonal=0.8))
    assert seasonal.anomalous
    assert seasonal.voters == ("seasonal",)
    service = policy.decide(with_votes(multivariate=0.6))
    assert service.anomalous
    assert service.support == pytest.approx(2 / 8)


def test_the_score_is_what_a_quorum_agrees_on() -> None:
    policy = VotingPolicy(weights={"a": 3.0, "b": 1.0, "c": 1.0}, quorum=2.0)
    alone = policy.decide({"a": 0.8, "b": 0.0, "c": 0.0})
    assert (alone.anomalous, alone.score, alone.support, alone.voters) == (True, 0.8, 0.6, ("a",))
    assert alone.mean == pytest.approx(0.48)
    # b and c together weigh 2: the quorum agrees on the lower of their scores.
    both = policy.decide({"a": 0.1, "b": 0.9, "c": 0.6})
    assert (both.anomalous, both.score, both.voters) == (True, 0.6, ("b", "c"))
    one = policy.decide({"a": 0.1, "b": 0.9, "c": 0.2})
    assert (one.anomalous, one.score, one.voters) == (False, 0.2, ("b",))
    assert policy.decide({"a": 7.0, "b": -1.0, "c": 1.0}).score == 1.0  # clamped to [0, 1]


def test_score_and_decision_never_disagree() -> None:
    policy = VotingPolicy()
    rng = np.random.default_rng(0)
    for _ in range(2000):
        scores = dict(zip(QUIET, rng.uniform(0.0, 1.0, len(QUIET)), strict=True))
        decision = policy.decide(scores)
        assert decision.anomalous == (decision.score >= 0.5)
        assert 0.0 <= decision.score <= 1.0
        assert decision.anomalous == (
            sum(policy.weights[name] for name in decision.voters) >= policy.quorum
        )


def test_unweighted_detectors_never_vote_and_an_empty_point_is_normal() -> None:
    policy = VotingPolicy(weights={"a": 1.0, "b": 0.0}, quorum=0.5)
    decision = policy.decide({"a": 0.0, "b": 1.0, "unknown": 1.0})
    assert (decision.anomalous, decision.score, decision.voters) == (False, 0.0, ())
    assert VotingPolicy().decide({}) == Decision(False, 0.0, 0.0, ())


def test_a_configured_rule_is_sufficient_alone() -> None:
    policy = VotingPolicy()
    assert policy.decide(with_votes(rules=1.0)).anomalous
    strict = VotingPolicy(sufficient=frozenset())
    assert not strict.decide(with_votes(rules=1.0)).anomalous


def test_each_signal_type_uses_its_own_policy() -> None:
    engine = DecisionEngine.model_validate(
        {
            "default": {"quorum": 3.0},
            "by_signal_type": {"error_rate": {"weights": {"robust_z": 1.0}, "quorum": 1.0}},
        }
    )
    scores = with_votes(robust_z=0.8)
    assert engine.decide(scores, "error_rate").anomalous
    assert not engine.decide(scores, "latency_p95_ms").anomalous
    assert not engine.decide(scores).anomalous


@pytest.mark.parametrize(
    "config",
    [
        {"quorum": 0.0},
        {"quorum": -1.0},
        {"vote_threshold": 0.0},
        {"weights": {"rcf": -1.0}},
        {"weights": {"rcf": float("nan")}},
        {"quorom": 0.5},
    ],
)
def test_bad_voting_configuration_is_refused(config: dict) -> None:
    with pytest.raises(ValidationError):
        VotingPolicy.model_validate(config)


# --- events ------------------------------------------------------------------------------------

HIGH = Decision(True, 0.95, 0.5, ("rcf", "seasonal"))
MID = Decision(True, 0.65, 0.4, ("iqr", "robust_z"))
LOW = Decision(True, 0.4, 0.34, ("seasonal",))
NORMAL = Decision(False, 0.05, 0.0, ())


def feed(tracker: EventTracker, decisions: list[Decision], t0: float = 0.0) -> list:
    changes = []
    for i, decision in enumerate(decisions):
        changes += tracker.update(t0 + 10.0 * i, decision, ("cpu",) if decision.anomalous else ())
    return changes


def test_one_incident_is_one_event_despite_short_gaps() -> None:
    tracker = EventTracker("api-gateway", open_after=3, close_after=4)
    pattern = [NORMAL, LOW, LOW, MID, NORMAL, NORMAL, HIGH, LOW, NORMAL, NORMAL, NORMAL, LOW]
    pattern += [NORMAL] * 4
    changes = feed(tracker, pattern)
    assert [c.action for c in changes] == ["open", "update", "close"]
    opened, updated, closed = (c.event for c in changes)
    assert opened.start == 10.0  # the first point of the opening run
    assert opened.severity == "medium"
    assert updated.severity == "critical"
    assert closed.start == 10.0
    assert closed.end == 110.0  # the last anomalous point
    assert closed.peak_score == 0.95
    assert closed.peak_at == 60.0
    assert closed.points == 6
    assert closed.voters == ("iqr", "rcf", "robust_z", "seasonal")
    assert closed.signals == ("cpu",)
    assert closed.state == "closed"
    assert closed.event_id == opened.event_id == "api-gateway@10000"
    assert tracker.open_event is None


def test_a_run_shorter_than_open_after_opens_nothing() -> None:
    tracker = EventTracker("s", open_after=3, close_after=2)
    assert feed(tracker, [HIGH, HIGH, NORMAL, HIGH, NORMAL, HIGH, HIGH, NORMAL]) == []
    assert tracker.current is None


def test_two_incidents_apart_by_close_after_are_two_events() -> None:
    tracker = EventTracker("s", open_after=2, close_after=3)
    changes = feed(tracker, [MID, MID, NORMAL, NORMAL, NORMAL, MID, MID, NORMAL, NORMAL, NORMAL])
    assert [(c.action, c.event.start, c.event.end) for c in changes] == [
        ("open", 0.0, 10.0),
        ("close", 0.0, 10.0),
        ("open", 50.0, 60.0),
        ("close", 50.0, 60.0),
    ]


def test_a_restart_neither_loses_nor_reopens_an_open_event() -> None:
    tracker = EventTracker("s", open_after=2, close_after=3)
    first = feed(tracker, [MID, MID, HIGH])
    assert [c.action for c in first] == ["open", "update"]
    restored = EventTracker.from_state(json.loads(json.dumps(tracker.state())))
    assert restored.open_event == tracker.open_event
    later = feed(restored, [MID, NORMAL, NORMAL, NORMAL], t0=30.0)
    assert [c.action for c in later] == ["close"]
    assert later[0].event.start == 0.0
    assert later[0].event.points == 4


def test_severity_follows_the_peak_score() -> None:
    assert [severity(s) for s in (0.1, 0.6, 0.75, 0.9, 1.0)] == [
        "low",
        "medium",
        "high",
        "critical",
        "critical",
    ]
    with pytest.raises(ValueError):
        EventTracker("s", open_after=0)

"""Counters kept once, in Prometheus: the readable views are read back from it."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, generate_latest

from stages.common.counters import CounterReadings, OutcomeCounters, counter_total


def test_a_snapshot_is_what_prometheus_exposes_since_the_owner_was_made() -> None:
    first = OutcomeCounters("test_counters_a", ["accepted", "rejected"], "test outcomes")
    first.inc("accepted", 5)
    first.inc("rejected", 0)  # nothing to count: not an error, not a change
    exposed = REGISTRY.get_sample_value("test_counters_a_accepted_total")
    assert first.snapshot() == {"accepted": 5, "rejected": 0}
    assert exposed is not None and exposed >= 5
    assert b"test_counters_a_accepted_total" in generate_latest()

    # A second owner of the same counters (an app built again) starts from zero...
    second = OutcomeCounters("test_counters_a", ["accepted", "rejected"], "test outcomes")
    assert second.snapshot() == {"accepted": 0, "rejected": 0}
    second.inc("accepted", 2)
    # ... and Prometheus, per process, has both.
    assert REGISTRY.get_sample_value("test_counters_a_accepted_total") == exposed + 2
    assert second.snapshot()["accepted"] == 2


def test_readings_sum_labelled_children() -> None:
    calls = Counter("test_counters_calls", "calls", ["outcome"])
    ok, error = calls.labels(outcome="ok"), calls.labels(outcome="error")
    ok.inc(3)
    readings = CounterReadings({"calls": [ok, error], "errors": [error]})
    ok.inc(4)
    error.inc(1)
    assert readings.snapshot() == {"calls": 5, "errors": 1}
    assert counter_total(ok) == 7

"""Metric values from the Pattern Generator, APM trace structure, determinism."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest

from stages.common.estate import BY_NAME, METRICS_BY_SERVICE
from stages.common.records import Record
from stages.common.vocabulary import BY_TYPE, METRICS
from stages.synthesis.generator import kind_quotas
from tests.synthesis.helpers import WINDOW_END, WINDOW_START, anomaly, make


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def test_cpu_spike_peaks_inside_the_window_and_returns_after() -> None:
    # 30 min of metrics from 10 min before a 10 min window; the spike peaks mid-window
    batch = make(
        count=3000,
        kinds=["metric"],
        timestamp="2026-03-02T09:50:00Z",
        spread_seconds=1800,
        anomaly=anomaly("cpu_spike", intensity=90, target_service="payment-service"),
    )
    start, end = _epoch(WINDOW_START), _epoch(WINDOW_END)
    cpu = [
        r
        for r in batch.records
        if r["metric_name"] == "cpu.utilization" and r["service"] == "payment-service"
    ]
    before = [r["value"] for r in cpu if _epoch(r["timestamp"]) < start]
    peak = [r["value"] for r in cpu if start + 240 <= _epoch(r["timestamp"]) < start + 360]
    after = [r["value"] for r in cpu if _epoch(r["timestamp"]) >= end]
    baseline = METRICS["cpu.utilization"].baseline
    assert before and peak and after
    assert max(before) < baseline * 1.5
    assert min(peak) > baseline * 2  # 35 % -> ~85 % at intensity 90
    assert max(after) < baseline * 1.5
    flagged = [r for r in cpu if r["is_anomaly"]]
    assert flagged and all(start <= _epoch(r["timestamp"]) < end for r in flagged)
    assert max(r["anomaly_score"] for r in flagged) > 80


def test_normal_metrics_stay_near_baseline_and_in_bounds() -> None:
    batch = make(count=2000, kinds=["metric"], spread_seconds=600)
    by_metric: dict[str, list[float]] = defaultdict(list)
    for record in batch.records:
        Record.model_validate(record)
        assert record["metric_name"] in METRICS_BY_SERVICE[record["service"]]
        by_metric[record["metric_name"]].append(record["value"])
    for name, values in by_metric.items():
        spec = METRICS[name]
        assert all(spec.low <= v <= spec.high for v in values), name
        mean = sum(values) / len(values)
        assert abs(mean - spec.baseline) <= 0.3 * spec.baseline + 1e-9, name


def test_spans_link_parents_and_children() -> None:
    batch = make(count=1000, kinds=["apm"])
    spans = batch.records
    assert len(spans) == 1000
    by_id = {s["span_id"]: s for s in spans}
    children = [s for s in spans if s["parent_span_id"] is not None]
    assert len(children) > 300
    for span in spans:
        Record.model_validate(span)
    complete = [c for c in children if c["parent_span_id"] in by_id]
    # only the last trace may be cut short; every other child's parent is in the batch
    assert len(complete) >= len(children) - 10
    for child in complete:
        parent = by_id[child["parent_span_id"]]
        assert parent["trace_id"] == child["trace_id"]
        assert parent["duration_ms"] >= child["duration_ms"]
        assert child["service"] in _calls(parent["service"])
    # Every span is a service serving a call; peer.service (OpenTelemetry: the service a client
    # span calls) has no place on them; it used to name the span's own service.
    assert not any("peer.service" in s["attributes"] for s in spans)


def _calls(service: str) -> tuple[str, ...]:
    return BY_NAME[service].calls


def test_anomalous_spans_are_slower_and_fail() -> None:
    normal = make(count=600, kinds=["apm"], services=["payment-service"]).records
    odd = make(count=600, kinds=["apm"], anomaly=anomaly("api_errors", intensity=100)).records
    target = [s for s in odd if s["is_anomaly"] and s["service"] == "api-gateway"]
    assert target
    assert sum(s["status"] == "ERROR" for s in target) > len(target) * 0.2
    assert sum(s["status"] == "ERROR" for s in normal) == 0


@pytest.mark.parametrize("anomaly_type", sorted(BY_TYPE))
def test_every_archetype_gives_valid_records_of_all_kinds(anomaly_type: str) -> None:
    batch = make(count=300, anomaly=anomaly(anomaly_type), anomalous_share=0.5)
    for record in batch.records:
        Record.model_validate(record)
    flagged = [r for r in batch.records if r["is_anomaly"]]
    assert {r["kind"] for r in flagged} >= {"log", "metric"}
    effects = {e.metric for e in BY_TYPE[anomaly_type].metrics}
    assert {r["metric_name"] for r in flagged if r["kind"] == "metric"} <= effects


def test_same_seed_same_records() -> None:
    body = {
        "count": 500,
        "seed": 42,
        "spread_seconds": 60,
        "anomaly": anomaly("cpu_spike"),
        "anomalous_share": 0.3,
    }
    first = make(**body).records
    second = make(**body).records
    assert strip(first) == strip(second)
    assert len({r["event_id"] for r in first + second}) == 1000
    other = make(**(body | {"seed": 43})).records
    assert strip(other) != strip(first)


def strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "event_id"} for r in records]


def test_kind_mix_is_70_20_10() -> None:
    batch = make(count=1000)
    kinds = [r["kind"] for r in batch.records]
    assert (kinds.count("log"), kinds.count("metric"), kinds.count("apm")) == (700, 200, 100)
    assert kind_quotas(7, ["metric", "apm"]) == {"metric": 5, "apm": 2}


def test_anomalous_share_and_window_decide_the_labels() -> None:
    inside = make(count=1000, anomaly=anomaly("api_errors"), anomalous_share=0.25)
    assert inside.anomalous == sum(r["is_anomaly"] for r in inside.records)
    # a quarter is drawn from the anomaly's scope (logs and metrics one by one, spans a trace
    # at a time); background records that fall in its scope are labelled too
    assert inside.anomalous >= 225
    background = make(count=1000, anomaly=anomaly("api_errors"), anomalous_share=0.0)
    assert 0 < background.anomalous < inside.anomalous
    outside = make(count=200, timestamp="2026-03-02T11:00:00Z", anomaly=anomaly("api_errors"))
    assert outside.anomalous == 0
    assert all(r["scenario_id"] is None for r in outside.records)

"""Metric series on a grid (the ``series`` of a synthesize request, used by history runs)."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from stages.common.estate import METRICS_BY_SERVICE
from stages.common.records import Record
from stages.synthesis.schemas import SynthesizeRequest
from tests.synthesis.helpers import make

START = "2026-03-02T00:00:00Z"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_the_grid_has_one_value_per_step_service_and_metric_besides_the_logs() -> None:
    batch = make(
        count=20,
        kinds=["log", "apm"],
        services=["payment-service", "auth-service"],
        timestamp=START,
        spread_seconds=600,
        series={"step_seconds": 10},
    )
    metrics = [r for r in batch.records if r["kind"] == "metric"]
    others = [r for r in batch.records if r["kind"] != "metric"]
    assert len(others) == 20
    series = len(METRICS_BY_SERVICE["payment-service"]) + len(METRICS_BY_SERVICE["auth-service"])
    assert len(metrics) == 60 * series
    per_series = Counter((r["service"], r["metric_name"]) for r in metrics)
    assert set(per_series.values()) == {60}
    first = datetime(2026, 3, 2, tzinfo=UTC)
    grid = {_stamp(first + timedelta(seconds=10 * i)) for i in range(60)}
    assert {r["timestamp"] for r in metrics} == grid
    for record in batch.records[:50] + metrics[::97]:
        Record.model_validate(record)


def test_a_window_labels_and_shapes_only_its_scope_on_the_grid() -> None:
    window = {
        "anomaly_type": "cpu_spike",
        "scenario_id": "cpu-spike-payment",
        "intensity": 100,
        "window_start": "2026-03-02T00:20:00Z",
        "window_end": "2026-03-02T00:30:00Z",
        "target_service": "payment-service",
    }
    batch = make(
        count=0,
        services=["payment-service"],
        timestamp=START,
        spread_seconds=3600,
        windows=[window],
        series={"step_seconds": 10, "metrics": ["cpu.utilization", "memory.utilization"]},
    )
    cpu = [r for r in batch.records if r["metric_name"] == "cpu.utilization"]
    inside = [r for r in cpu if "00:20:00" <= r["timestamp"][11:19] < "00:30:00"]
    outside = [r for r in cpu if r not in inside]
    assert len(inside) == 60 and len(outside) == 300
    assert all(r["is_anomaly"] and r["scenario_id"] == "cpu-spike-payment" for r in inside)
    assert not any(r["is_anomaly"] or r["scenario_id"] for r in outside)
    memory = [r for r in batch.records if r["metric_name"] == "memory.utilization"]
    assert not any(r["is_anomaly"] for r in memory)
    # the spike peaks mid-window, far above the hour's normal values
    peak = max(r["value"] for r in inside)
    assert peak > statistics.mean(r["value"] for r in outside) + 30


def test_weekly_change_and_trend_move_the_series() -> None:
    def mean_cpu(day: str, **series: float) -> float:
        batch = make(
            count=0,
            services=["auth-service"],
            timestamp=f"{day}T12:00:00Z",
            spread_seconds=600,
            series={"step_seconds": 10, "metrics": ["request.rate"], **series},
        )
        return statistics.mean(r["value"] for r in batch.records)

    # 2026-03-02 is a Monday, 2026-03-07 a Saturday
    weekday, weekend = mean_cpu("2026-03-02"), mean_cpu("2026-03-07", weekly_amplitude=-0.3)
    assert weekend < weekday * 0.8
    flat = mean_cpu("2026-03-06", weekly_amplitude=0, trend_per_day=0)
    rising = mean_cpu(
        "2026-03-06", weekly_amplitude=0, trend_per_day=0.05, trend_origin="2026-03-02T12:00:00Z"
    )
    assert rising == pytest.approx(flat * 1.2, rel=0.05)  # four days at +5 % a day


def test_a_grid_too_large_for_one_call_is_a_422() -> None:
    from stages.common.config import Settings
    from stages.synthesis.app import create_app

    body = {
        "count": 0,
        "timestamp": START,
        "spread_seconds": 86_400,
        "series": {"step_seconds": 10},
        "forward": False,
    }
    with TestClient(create_app(Settings(state_port=1, ingestion_port=1))) as client:
        resp = client.post("/api/synthesize", json=body)
        assert resp.status_code == 422
        assert "at most 5000" in resp.json()["message"]
        no_time = client.post("/api/synthesize", json=body | {"timestamp": None})
        assert no_time.status_code == 422
        zero = client.post("/api/synthesize", json={"count": 0})
        assert zero.status_code == 422


def test_total_counts_the_grid() -> None:
    req = SynthesizeRequest.model_validate(
        {
            "count": 7,
            "timestamp": START,
            "spread_seconds": 95,
            "services": ["reporting-service"],
            "series": {"step_seconds": 10},
        }
    )
    assert req.total() == 7 + 10 * len(METRICS_BY_SERVICE["reporting-service"])


def test_live_metric_records_have_the_grid_s_week_end_change() -> None:
    """History (the grid, default shape) handed over to live traffic (metric records without a
    grid) on a week-end: both are quieter by the same week-end change, so the first live buckets
    do not jump above the history's level (a seam detection called an anomaly)."""

    def mean_values(**body: object) -> dict[str, float]:
        batch = make(
            services=["payment-service"],
            timestamp="2026-03-07T12:00:00Z",  # a Saturday
            spread_seconds=600,
            **body,
        )
        values: dict[str, list[float]] = {}
        for record in batch.records:
            if record["kind"] == "metric":
                values.setdefault(record["metric_name"], []).append(record["value"])
        return {metric: statistics.mean(v) for metric, v in values.items()}

    grid = mean_values(count=0, series={"step_seconds": 10})
    live = mean_values(count=4000, kinds=["metric"])
    for metric in ("cpu.utilization", "latency.p95", "request.rate", "memory.utilization"):
        assert live[metric] == pytest.approx(grid[metric], rel=0.03), metric

"""Each pattern kind's shape, determinism, and parameter validation (the in-process library)."""

from __future__ import annotations

import itertools
import statistics

import pytest
from pydantic import ValidationError

from stages.common.errors import Unprocessable
from stages.patterns import Composition, anomaly_component, evaluate, parse_component

DAY = 86_400.0
MONDAY = 1_767_571_200.0  # 2026-01-05T00:00:00Z


def one(kind: str, baseline: float = 0.0, **params: object) -> Composition:
    return Composition(baseline=baseline, components=[{"kind": kind, **params}])


def grid(start: float, end: float, step: float) -> list[float]:
    return [start + i * step for i in range(int((end - start) / step) + 1)]


def test_constant_adds_its_offset() -> None:
    assert evaluate(one("constant", 10, offset=2.5), [0, 1e9]) == [12.5, 12.5]


def test_gaussian_spike_peaks_inside_its_window_and_is_zero_outside() -> None:
    ts = grid(0, 1000, 1)
    values = evaluate(one("gaussian_spike", 5, start=400, end=600, magnitude=50), ts)
    peak = max(range(len(ts)), key=values.__getitem__)
    assert 495 <= ts[peak] <= 505
    assert values[peak] == pytest.approx(55, abs=0.1)
    assert all(v == 5 for t, v in zip(ts, values, strict=True) if t < 400 or t >= 600)
    assert values[400] == pytest.approx(5, abs=0.01) and values[599] == pytest.approx(5, abs=0.1)


def test_ramp_grows_monotonically_then_returns_to_normal() -> None:
    ts = grid(0, 200, 1)
    values = evaluate(one("ramp", 10, start=50, end=150, magnitude=30), ts)
    inside = values[50:150]
    assert all(b > a for a, b in itertools.pairwise(inside))
    assert inside[-1] == pytest.approx(39.7)
    assert values[:50] == [10] * 50 and values[150:] == [10] * 51


def test_negative_step_shifts_the_level_inside_the_window_only() -> None:
    values = evaluate(one("step", 100, start=10, end=20, magnitude=-40), [5, 10, 19.9, 20])
    assert values == [100, 60, 60, 100]


def test_daily_seasonality_repeats_every_day_and_peaks_at_peak_hour() -> None:
    comp = one("daily_seasonality", 50, amplitude=20, peak_hour=14)
    hours = [MONDAY + h * 3600 for h in range(24)]
    today = evaluate(comp, hours)
    assert evaluate(comp, [t + 3 * DAY for t in hours]) == pytest.approx(today)
    assert max(today) == pytest.approx(70) and today.index(max(today)) == 14
    assert min(today) == pytest.approx(30) and today.index(min(today)) == 2


def test_business_hours_profile_is_flat_at_night_and_full_at_midday() -> None:
    comp = one("daily_seasonality", 10, amplitude=90, profile="business_hours")
    night, noon = evaluate(comp, [MONDAY + 3 * 3600, MONDAY + 12 * 3600])
    assert night == pytest.approx(10) and noon == pytest.approx(100)


def test_weekly_seasonality_only_moves_weekends() -> None:
    comp = one("weekly_seasonality", 100, amplitude=-40)
    wednesday, saturday, sunday = evaluate(
        comp, [MONDAY + 2.5 * DAY, MONDAY + 5.5 * DAY, MONDAY + 6.5 * DAY]
    )
    assert (wednesday, saturday, sunday) == (100, 60, 60)


def test_linear_trend_starts_at_its_start() -> None:
    comp = one("linear_trend", 1, slope_per_hour=2, start=3600)
    assert evaluate(comp, [0, 3600, 3 * 3600]) == [1, 1, 5]


def test_gaussian_noise_has_the_requested_spread_and_zero_mean() -> None:
    values = evaluate(one("gaussian_noise", 50, sigma=4), grid(0, 20, 0.001))
    assert statistics.fmean(values) == pytest.approx(50, abs=0.2)
    assert statistics.stdev(values) == pytest.approx(4, rel=0.05)


def test_random_walk_wanders_smoothly() -> None:
    values = evaluate(one("random_walk", 0, sigma=1, step_seconds=60), grid(0, 6000, 1))
    steps = [abs(b - a) for a, b in itertools.pairwise(values)]
    assert max(steps) < 0.5  # continuous at 1 s resolution
    assert max(values) - min(values) > 1  # but it does move


def test_sawtooth_rises_and_resets_each_period() -> None:
    comp = one("sawtooth", 0, start=0, end=100, magnitude=10, period_seconds=25)
    assert evaluate(comp, [0, 12.5, 24.9, 25, 50, 100]) == pytest.approx([0, 5, 9.96, 0, 0, 0])


def test_exponential_decay_halves_every_half_life() -> None:
    comp = one("exponential_decay", 0, start=0, end=100, magnitude=8, half_life_seconds=10)
    assert evaluate(comp, [0, 10, 20, 100]) == pytest.approx([8, 4, 2, 0])


def test_oscillation_swings_both_ways_with_its_period() -> None:
    comp = one("oscillation", 10, amplitude=5, period_seconds=40)
    assert evaluate(comp, [0, 10, 30, 40]) == pytest.approx([10, 15, 5, 10])


def test_poisson_bursts_hit_the_expected_rate() -> None:
    comp = one("poisson_bursts", 0, magnitude=7, rate_per_hour=60, burst_seconds=1)
    values = evaluate(comp, grid(0.5, 36_000.5, 1), seed=3)
    assert set(values) == {0, 7}
    assert 500 <= values.count(7) <= 700  # 10 h at 60 bursts/h: ~600


def test_dropout_forces_zero_even_below_the_clip_floor() -> None:
    comp = Composition(
        baseline=50,
        components=[
            {"kind": "gaussian_noise", "sigma": 3},
            {"kind": "dropout", "start": 10, "end": 20},
        ],
        low=40,
    )
    values = evaluate(comp, [5, 10, 15, 25])
    assert values[1:3] == [0, 0] and values[0] >= 40 and values[3] >= 40


def test_variance_change_scales_noise_inside_the_window() -> None:
    comp = Composition(
        baseline=0,
        components=[
            {"kind": "gaussian_noise", "sigma": 1},
            {"kind": "variance_change", "start": 100, "end": 200, "factor": 5},
        ],
    )
    before = evaluate(comp, grid(0, 99.999, 0.001))
    during = evaluate(comp, grid(100, 199.999, 0.001))
    assert statistics.stdev(during) / statistics.stdev(before) == pytest.approx(5, rel=0.05)


def test_clip_bounds_the_values() -> None:
    comp = Composition(
        baseline=95, components=[{"kind": "gaussian_noise", "sigma": 10}], high=100, low=90
    )
    values = evaluate(comp, grid(0, 10, 0.01))
    assert max(values) == 100 and min(values) == 90


def test_same_seed_same_values_other_seed_other_values() -> None:
    comp = Composition(
        baseline=10,
        components=[
            {"kind": "gaussian_noise"},
            {"kind": "random_walk"},
            {"kind": "poisson_bursts"},
        ],
    )
    ts = grid(MONDAY, MONDAY + 3600, 7)
    assert evaluate(comp, ts, seed=42) == evaluate(comp, ts, seed=42)
    assert evaluate(comp, ts, seed=42) != evaluate(comp, ts, seed=43)


def test_one_timestamp_alone_equals_the_same_timestamp_in_a_batch() -> None:
    comp = Composition(
        baseline=10,
        components=[
            {"kind": "gaussian_noise", "sigma": 2},
            {"kind": "random_walk"},
            {"kind": "daily_seasonality", "amplitude": 3},
            {"kind": "poisson_bursts", "magnitude": 4},
            {"kind": "variance_change", "extra_sigma": 1},
        ],
    )
    batch = grid(MONDAY, MONDAY + 600, 0.37)
    together = evaluate(comp, batch, seed=9)
    alone = [evaluate(comp, [t], seed=9)[0] for t in batch[::17]]
    assert alone == together[::17]


@pytest.mark.parametrize(
    ("kind", "params", "problem"),
    [
        ("gaussian_spike", {"start": 10, "end": 10}, r"start \(10.0\) must be before end"),
        ("ramp", {"start": 0}, "Field required"),
        ("sawtooth", {"start": 0, "end": 1, "period_seconds": 0}, "greater than or equal"),
        ("gaussian_noise", {"sigma": -1}, "greater than or equal"),
        ("step", {"magnitude": float("nan")}, "finite number"),
        ("oscillation", {"wavelength": 3}, "Extra inputs are not permitted"),
        ("daily_seasonality", {"business_start": 9, "business_end": 9.5}, "at least one hour"),
    ],
)
def test_invalid_parameters_are_refused_with_a_message(
    kind: str, params: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        parse_component({"kind": kind, **params})


def test_composition_bounds() -> None:
    with pytest.raises(ValidationError, match="low"):
        Composition(baseline=0, low=5, high=1)
    with pytest.raises(ValidationError, match="at most 32"):
        Composition(baseline=0, components=[{"kind": "constant"}] * 33)


@pytest.mark.parametrize(
    "shape",
    ["gaussian_spike", "ramp", "step", "sawtooth", "oscillation", "poisson_bursts",
     "exponential_decay", "variance_change"],
)  # fmt: skip
def test_anomaly_overlays_are_zero_outside_their_window_and_move_inside(shape: str) -> None:
    start, end = MONDAY + 1000, MONDAY + 1600
    comp = Composition(baseline=20, components=[anomaly_component(shape, start, end, 60)])
    outside = evaluate(comp, grid(MONDAY, start - 0.5, 0.5) + grid(end, end + 500, 0.5), seed=1)
    inside = evaluate(comp, grid(start, end - 0.5, 0.5), seed=1)
    assert set(outside) == {20}
    assert max(abs(v - 20) for v in inside) >= 40
    assert max(abs(v - 20) for v in inside) <= 90


def test_anomaly_dropout_reads_zero_inside_the_window() -> None:
    comp = Composition(baseline=20, components=[anomaly_component("dropout", 10, 20, 99)])
    assert evaluate(comp, [9, 10, 19, 20]) == [20, 0, 0, 20]


def test_anomaly_component_refuses_unknown_shapes_and_empty_windows() -> None:
    with pytest.raises(Unprocessable, match="unknown anomaly shape 'wobble'") as err:
        anomaly_component("wobble", 0, 10, 1)
    assert "ramp" in err.value.detail["valid"]
    with pytest.raises(Unprocessable, match="start < end"):
        anomaly_component("ramp", 10, 10, 1)
    tiny = anomaly_component("sawtooth", 0, 1e-6, 1)  # shorter than the smallest period
    assert evaluate(Composition(baseline=0, components=[tiny]), [0.0]) == [0.0]

"""Each detector on synthetic series with a known anomaly: the anomaly scores high, the normal
stretch after warm-up scores low; warm-up scores 0; state round trips give identical scores."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from stages.detection.detectors import (
    IQRFences,
    RandomCutForest,
    RobustMahalanobis,
    RobustZ,
    RuleDetector,
    SeasonalBaseline,
    SpectralResidual,
    from_state,
    parse_rule,
    parse_rules,
    squash,
)
from stages.detection.detectors.base import Detector, VectorDetector
from stages.detection.detectors.rules import RuleSyntaxError
from tests.detection import synthetic

# Points after which every detector with default settings is past its warm-up on these series.
WARM = 300

UNIVARIATE: dict[str, Callable[[], Any]] = {
    "robust_z": RobustZ,
    "iqr": IQRFences,
    "seasonal": lambda: SeasonalBaseline(),
    "spectral_residual": SpectralResidual,
    "rcf": RandomCutForest,
}

# Which detector is expected to see which shape. The seasonal detector needs two days of history
# and sees the other shapes only against the same hour of earlier days, so it is held to the
# shape it exists for (and to the spike, which it sees like the others).
CASES = [
    ("robust_z", "spike"),
    ("robust_z", "level_shift"),
    ("robust_z", "step"),
    ("robust_z", "variance_change"),
    ("iqr", "spike"),
    ("iqr", "level_shift"),
    ("iqr", "step"),
    ("iqr", "variance_change"),
    ("spectral_residual", "spike"),
    ("spectral_residual", "level_shift"),
    ("spectral_residual", "step"),
    ("rcf", "spike"),
    ("rcf", "level_shift"),
    ("rcf", "step"),
    ("rcf", "variance_change"),
    ("seasonal", "off_season"),
]


def run(detector: Any, series: synthetic.Labelled) -> np.ndarray:
    return np.array(
        [
            detector.update(float(t), float(v))
            for t, v in zip(series.timestamps, series.values, strict=True)
        ]
    )


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_the_anomaly_scores_above_every_normal_point(name: str, shape: str) -> None:
    series = getattr(synthetic, shape)()
    scores = run(UNIVARIATE[name](), series)
    warm = 3 * synthetic.DAY_POINTS if name == "seasonal" else WARM
    normal = scores[warm : series.start]
    peak = scores[series.start : series.end].max()
    assert ((scores >= 0.0) & (scores <= 1.0)).all()
    assert peak >= 0.5, f"{name} on {shape}: the anomaly peaks at {peak:.3f}"
    assert peak > normal.max(), f"{name} on {shape}: normal max {normal.max():.3f} >= {peak:.3f}"
    assert np.median(normal) < 0.1


def test_seasonal_sees_what_the_range_detectors_cannot() -> None:
    """The off-season value is inside the daily range: only the seasonal detector flags it."""
    series = synthetic.off_season()
    seasonal = run(SeasonalBaseline(), series)
    robust = run(RobustZ(), series)
    window = slice(series.start, series.end)
    assert seasonal[window].min() >= 0.5
    assert robust[window].max() < 0.5


def test_seasonal_warms_up_per_slot_over_earlier_days() -> None:
    times, values = synthetic.daily(days=3)
    scores = run(SeasonalBaseline(), synthetic.Labelled(times, values, len(values), len(values)))
    # Two earlier days are needed for a slot's baseline, then 32 residuals for their scale.
    assert (scores[: 2 * synthetic.DAY_POINTS + 32] == 0.0).all()
    assert (scores[2 * synthetic.DAY_POINTS + 32 :] > 0.0).any()


def test_seasonal_learns_quiet_weekends_once_it_has_seen_two_weeks() -> None:
    step = 1800.0
    n = int(5 * synthetic.WEEK_SECONDS / step)
    times = synthetic.T0 + np.arange(n) * step
    weekend = ((times - synthetic.T0) // 86_400).astype(int) % 7 >= 5
    daily = 20 * np.sin(2 * np.pi * ((times - synthetic.T0) % 86_400) / 86_400)
    values = 100 + daily + np.random.default_rng(7).normal(0, 2, n) - np.where(weekend, 30, 0)
    series = synthetic.Labelled(times, values, n, n)
    third_week_on = int(2 * synthetic.WEEK_SECONDS / step)
    weekly = run(SeasonalBaseline(), series)[third_week_on:]
    daily_only = run(SeasonalBaseline(keep_weeks=0), series)[third_week_on:]
    assert weekly.max() < 0.5
    assert daily_only.max() >= 0.5  # without the week, every weekend looks like an outage


@pytest.mark.parametrize("name", sorted(UNIVARIATE))
def test_warm_up_scores_are_zero(name: str) -> None:
    series = synthetic.spike(n=40, at=35, height=1e6)
    detector = UNIVARIATE[name]()
    scores = run(detector, series)
    # 32 points is the shortest warm-up of the defaults; rcf waits for its forest (65 points),
    # spectral residual for a full window (64) and seasonal for two days.
    assert (scores[:32] == 0.0).all()
    if name in {"rcf", "spectral_residual", "seasonal"}:
        assert (scores == 0.0).all()
    else:
        assert scores[35] == 1.0


@pytest.mark.parametrize("name", sorted(UNIVARIATE))
def test_state_round_trip_gives_identical_scores(name: str) -> None:
    series = synthetic.off_season(days=4) if name == "seasonal" else synthetic.step()
    half = len(series.values) * 3 // 4
    original = UNIVARIATE[name]()
    for t, v in zip(series.timestamps[:half], series.values[:half], strict=True):
        original.update(float(t), float(v))
    restored = from_state(json.loads(json.dumps(original.state())))
    assert type(restored) is type(original)
    rest = list(zip(series.timestamps[half:], series.values[half:], strict=True))
    after = [restored.update(float(t), float(v)) for t, v in rest]
    expected = [original.update(float(t), float(v)) for t, v in rest]
    assert after == expected
    assert max(after) > 0.0  # the comparison covered real scores, not only warm-up zeros


def test_every_detector_keeps_the_interface() -> None:
    for factory in UNIVARIATE.values():
        assert isinstance(factory(), Detector)
    assert isinstance(RobustMahalanobis(2), VectorDetector)
    assert isinstance(RuleDetector([parse_rule("x > 1")]), Detector)


def test_a_constant_series_is_normal_until_it_moves() -> None:
    for name, factory in UNIVARIATE.items():
        if name == "seasonal":
            continue
        detector = factory()
        scores = [detector.update(synthetic.T0 + i * 300.0, 5.0) for i in range(400)]
        assert max(scores) == 0.0, name
        assert detector.update(synthetic.T0 + 400 * 300.0, 50.0) >= 0.5, name


def test_non_finite_values_are_refused_not_learned() -> None:
    detector = RobustZ()
    with pytest.raises(ValueError, match="not a finite number"):
        detector.update(0.0, float("nan"))
    assert detector.state()["window"] == []


# --- multivariate ------------------------------------------------------------------------------


def correlated(n: int = 1200, seed: int = 9) -> np.ndarray:
    """Load and latency moving together (latency follows load), plus noise."""
    rng = np.random.default_rng(seed)
    load = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n)) * 0.5 + 10 * np.sin(np.arange(n) / 30)
    latency = 2.0 * load + rng.normal(0.0, 1.0, n)
    return np.column_stack([load, latency])


def test_multivariate_flags_a_broken_correlation_that_each_signal_hides() -> None:
    data = correlated()
    start, end = 1000, 1010
    # Latency moves the opposite way to load: each value stays inside its own recent range.
    data[start:end, 1] = 2.0 * (200.0 - data[start:end, 0])
    detector = RobustMahalanobis(2)
    scores = np.array([detector.update(float(i), row) for i, row in enumerate(data)])
    assert (scores[:64] == 0.0).all()
    normal = scores[WARM:start]
    assert scores[start:end].max() >= 0.5
    assert scores[start:end].max() > normal.max()
    assert np.median(normal) < 0.1
    univariate = RobustZ()
    single = [univariate.update(float(i), float(v)) for i, v in enumerate(data[:, 1])]
    assert max(single[start:end]) < 0.5


def test_multivariate_state_round_trip_and_shape_checks() -> None:
    data = correlated()
    original = RobustMahalanobis(2)
    for i, row in enumerate(data[:600]):
        original.update(float(i), row)
    restored = from_state(json.loads(json.dumps(original.state())))
    rest = list(enumerate(data[600:], start=600))
    assert [restored.update(float(i), r) for i, r in rest] == [
        original.update(float(i), r) for i, r in rest
    ]
    with pytest.raises(ValueError, match="expected 2 values"):
        original.update(0.0, [1.0])


# --- rules -------------------------------------------------------------------------------------


def test_a_rule_fires_after_its_count_of_points_and_resets() -> None:
    detector = RuleDetector(parse_rules("error_rate > 0.05 for 3 points; error_rate >= 0.5"))
    values = [0.01, 0.06, 0.07, 0.08, 0.09, 0.01, 0.06, 0.5, 0.01]
    scores = [detector.update(float(i), v) for i, v in enumerate(values)]
    assert scores == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]


def test_rules_parse_and_refuse_clearly() -> None:
    rule = parse_rule("latency_p95_ms<=12.5 for 2")
    assert (rule.signal, rule.op, rule.threshold, rule.points) == ("latency_p95_ms", "<=", 12.5, 2)
    assert parse_rule(str(rule)) == rule
    for bad in ("error_rate = 0.05", "error_rate > lots", "> 3", "x > 1 for 0 points"):
        with pytest.raises(RuleSyntaxError, match="not a rule"):
            parse_rule(bad)
    detector = RuleDetector.for_signal(parse_rules("a > 1\nb > 1"), "b")
    assert [str(r) for r in detector.rules] == ["b > 1.0 for 1 points"]
    restored = from_state(json.loads(json.dumps(detector.state())))
    assert restored.update(0.0, 2.0) == 1.0


def test_squash_is_monotonic_with_half_at_the_threshold() -> None:
    xs = np.linspace(-1.0, 20.0, 500)
    ys = [squash(float(x), 3.0) for x in xs]
    assert all(a <= b for a, b in itertools.pairwise(ys))
    assert squash(0.0, 3.0) == 0.0
    assert squash(3.0, 3.0) == pytest.approx(0.5)
    assert squash(float("inf"), 3.0) == 1.0
    assert squash(float("nan"), 3.0) == 0.0
    assert 0.99 < squash(6.0, 3.0) < 1.0

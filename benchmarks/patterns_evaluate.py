"""How long one ``evaluate`` takes: ``python -m benchmarks.patterns_evaluate``.

Synthesis and the orchestrator call ``evaluate`` per emitted metric value, often with a single
timestamp, so the figure that matters is microseconds per single-timestamp call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from stages.patterns.compose import Composition, anomaly_component, evaluate

START = 1_767_571_200.0  # 2026-01-05T00:00:00Z

CASES: dict[str, Composition] = {
    "daily + weekly + noise + ramp": Composition(
        baseline=35,
        components=[
            {"kind": "daily_seasonality", "amplitude": 10},
            {"kind": "weekly_seasonality", "amplitude": -5},
            {"kind": "gaussian_noise", "sigma": 2},
            anomaly_component("ramp", START + 600, START + 1200, 40),
        ],
        low=0,
        high=100,
    ),
    "business hours + noise + random walk + spike": Composition(
        baseline=35,
        components=[
            {"kind": "daily_seasonality", "amplitude": 10, "profile": "business_hours"},
            {"kind": "gaussian_noise", "sigma": 2},
            {"kind": "random_walk", "sigma": 0.5},
            anomaly_component("gaussian_spike", START + 600, START + 1200, 50),
        ],
        low=0,
        high=100,
    ),
}


def best_of(repeats: int, run: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    stamps = [START + i * 0.1 for i in range(args.calls)]
    for name, composition in CASES.items():

        def singles(c: Composition = composition) -> None:
            for t in stamps:
                evaluate(c, [t], seed=7)

        def batch(c: Composition = composition) -> None:
            evaluate(c, stamps, seed=7)

        single_us = best_of(args.repeats, singles) / args.calls * 1e6
        batch_us = best_of(args.repeats, batch) / args.calls * 1e6
        print(
            f"{name}: {single_us:.1f} us per single-timestamp call, "
            f"{batch_us:.1f} us per value in a batch of {args.calls}"
        )


if __name__ == "__main__":
    main()

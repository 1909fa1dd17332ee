"""What ``score-csv`` costs per 10,000 points, and which detector the time goes to.

    .venv/bin/python -m benchmarks.score_csv [--points 10000] [--repeat 1] [--normal-days 3]

Writes a seeded series shaped like the public corpora (5-minute points, a daily cycle, a slow
trend, noise, one burst) to a temporary folder, runs ``python -m stages.detection score-csv`` on
it as a user would (a subprocess, start-up included), and reports its wall time and CPU time per
10,000 points (best of ``--repeat``), then the CPU time per point of each default detector alone,
in-process (and of the multivariate detector over 4 signals). With ``--normal-days N`` it also
runs the ensemble (``SeriesEnsemble``, its defaults) over N days of normal-only 10-second data of
three seeded shapes (a latency with a daily cycle and gaussian noise, an error rate of Poisson
counts, a throughput with a daily cycle and log-normal noise) and reports the events it opens and
the points it calls anomalous: false alarms, since nothing was injected. CPU time is the figure
to compare: on a shared host the wall time also counts the neighbours' work (the load average is
printed beside it).
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, reference_loop_ms
from stages.detection.detectors import RobustMahalanobis
from stages.detection.ensemble import SeriesEnsemble, default_detectors
from tests.support.processes import ROOT

STEP = 300.0
T0 = 1_700_006_400.0


def series(points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = T0 + np.arange(points) * STEP
    phase = 2 * np.pi * ((times - T0) % 86_400) / 86_400
    values = 100 + 20 * np.sin(phase) + np.linspace(0, 10, points) + rng.normal(0, 3, points)
    values[points * 3 // 4 : points * 3 // 4 + 12] += 45
    return times, values


def normal_signals(days: int, seed: int = 11) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n = int(days * 86_400 / 10)
    times = T0 + np.arange(n) * 10.0
    phase = 2 * np.pi * ((times - T0) % 86_400) / 86_400
    return times, {
        "latency": 120 + 40 * np.sin(phase) + rng.normal(0, 5, n),
        "error_rate": rng.poisson(2 + 1.5 * np.sin(phase).clip(0), n) / 100.0,
        "throughput": (500 + 300 * np.sin(phase)) * rng.lognormal(0, 0.05, n),
    }


def false_alarms(days: int) -> None:
    times, signals = normal_signals(days)
    for name, values in signals.items():
        ensemble = SeriesEnsemble(name)
        opened = anomalous = 0
        for t, v in zip(times.tolist(), values.tolist(), strict=True):
            result = ensemble.update(t, v)
            anomalous += result.decision.anomalous
            opened += sum(change.action == "open" for change in result.changes)
        print(
            f"  {name:12s} {days} normal days at 10 s: {opened} events opened, "
            f"{anomalous} of {len(times)} points anomalous"
        )


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.score_csv", description=__doc__)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--normal-days", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    times, values = series(args.points)
    per = 10_000 / args.points
    print(f"machine: {machine_info()}  reference loop: {reference_loop_ms()} ms")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.csv", Path(folder) / "out.csv"
        with source.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["timestamp", "value"])
            writer.writerows((f"{t:.0f}", f"{v:.4f}") for t, v in zip(times, values, strict=True))
        best_wall = best_cpu = float("inf")
        for _ in range(args.repeat):
            cpu_before, began = children_cpu(), time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "stages.detection", "score-csv", str(source), str(target)],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            best_wall = min(best_wall, time.perf_counter() - began)
            best_cpu = min(best_cpu, children_cpu() - cpu_before)
    print(
        f"score-csv, {args.points} points: {best_wall * per:.2f} s wall, "
        f"{best_cpu * per:.2f} s CPU per 10,000 points (start-up included)"
    )
    timestamps, numbers = times.tolist(), values.tolist()
    for name, detector in default_detectors().items():
        began = time.process_time()
        for t, v in zip(timestamps, numbers, strict=True):
            detector.update(t, v)
        spent = time.process_time() - began
        print(f"  {name:18s} {spent / args.points * 1e6:7.1f} µs CPU per point")
    vectors = np.random.default_rng(0).normal(size=(2_000, 4)).tolist()
    multivariate = RobustMahalanobis(4)
    began = time.process_time()
    for i, vector in enumerate(vectors):
        multivariate.update(float(i), vector)
    spent = time.process_time() - began
    print(f"  {'multivariate (4)':18s} {spent / len(vectors) * 1e6:7.1f} µs CPU per point")
    if args.normal_days:
        print("false alarms on normal-only data:")
        false_alarms(args.normal_days)
    return 0


if __name__ == "__main__":
    sys.exit(main())

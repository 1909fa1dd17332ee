"""``python -m benchmarks.detection``: the scoreboard of the detection ensemble.

    .venv/bin/python -m benchmarks.detection [--seed 1] [--quick] [--publish] [--cache DIR]

Makes a seeded labelled history (``history.py``: learning days, test days with anomaly windows,
normal-only days), runs the detection service's ensemble over it with the service's settings
(``scoring.py``), joins the events with the windows and prints the scoreboard: overall figures
against the targets, per anomaly type, per detector alone, and the invisible types with their
reason. Writes ``benchmarks/results/detection-<stamp>.json`` (``--out`` elsewhere); with
``--publish`` also ``detection/scoreboard/latest.json`` in the models bucket (S3 endpoint from
the settings). The same seed gives the same history and the same scoreboard: the JSON differs
only in ``generated_at`` and ``timings``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.detection.history import QUICK, Layout, load_or_generate
from benchmarks.detection.scoring import (
    ENSEMBLE,
    detect,
    observe,
    points_of,
    scoreboard,
)
from stages.common import resources
from stages.common.config import Settings, get_settings
from stages.detection.worker import Configuration

SCOREBOARD_KEY = "detection/scoreboard/latest.json"


def run(
    seed: int,
    layout: Layout,
    settings: Settings,
    cache: Path | None = None,
    progress: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    config = Configuration(settings)
    width = float(settings.features_bucket_seconds)
    began = time.perf_counter()
    history = load_or_generate(
        layout, seed, config.series, settings.features_bucket_seconds, cache, progress
    )
    made = time.perf_counter()
    points = points_of(history, config.series)
    detection = detect(points, config, width, jobs=jobs)
    detected = time.perf_counter()
    observations = observe(history.windows, points, config.series, layout.test_start.timestamp())
    board = scoreboard(history, detection, observations, datetime.now(UTC))
    board["settings"] = {
        "detection_series": settings.detection_series,
        "detection_rules": settings.detection_rules,
        "detection_voting": settings.detection_voting,
        "detection_open_after": settings.detection_open_after,
        "detection_close_after": settings.detection_close_after,
        "features_bucket_seconds": settings.features_bucket_seconds,
    }
    board["timings"] = {
        "history_s": round(made - began, 1),
        "detection_s": round(detected - made, 1),
        "total_s": round(time.perf_counter() - began, 1),
    }
    return board


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(board: dict[str, Any]) -> str:
    o = board["overall"]
    t = board["targets"]
    lines = [
        f"detection scoreboard, seed {board['seed']}: {board['days']['learn']:g} learning days, "
        f"{board['days']['test']:g} test days, {board['days']['normal_only']:g} normal-only days "
        f"at {board['days']['resolution_seconds']:g} s, {len(board['services'])} services",
        "",
        f"{'overall (observable types)':28s} {'value':>8s} {'target':>8s}",
        f"{'event recall':28s} {_fmt(o['recall']):>8s} {'>= ' + _fmt(t['recall']):>8s}"
        f"   ({o['detected']}/{o['windows']} windows)",
        f"{'event precision':28s} {_fmt(o['precision']):>8s} {'>= ' + _fmt(t['precision']):>8s}"
        f"   ({o['events'] - o['false_positives']}/{o['events']} events)",
        f"{'F1':28s} {_fmt(o['f1']):>8s}",
        f"{'time to detect p50 (s)':28s} {_fmt(o['ttd_p50_s'], 0):>8s} "
        f"{'<= ' + _fmt(t['ttd_p50_s'], 0):>8s}",
        f"{'time to detect p90 (s)':28s} {_fmt(o['ttd_p90_s'], 0):>8s}",
        f"{'false alarms/service/day':28s} {_fmt(o['false_alarms_per_service_day']):>8s} "
        f"{'<= ' + _fmt(t['false_alarms_per_service_day']):>8s}   "
        f"({o['false_alarms']} events on the normal-only days)",
        f"targets met: {'yes' if board['met'] else 'NO'}",
        "",
        f"{'anomaly type':26s} {'obs':>3s} {'win':>4s} {'det':>4s} {'recall':>7s} "
        f"{'prec':>6s} {'ttd50':>6s}",
    ]
    for row in board["per_type"]:
        lines.append(
            f"{row['anomaly_type']:26s} {'yes' if row['observable'] else 'no':>3s} "
            f"{row['windows']:4d} {row['detected']:4d} {_fmt(row['recall']):>7s} "
            f"{_fmt(row['precision']):>6s} {_fmt(row['ttd_p50_s'], 0):>6s}"
        )
    lines += [
        "",
        f"{'detector':18s} {'prec':>6s} {'recall':>7s} {'F1':>6s} {'ttd50':>6s} "
        f"{'FA/svc/day':>10s}",
    ]
    rows = sorted(board["per_detector"], key=lambda r: r["detector"] != ENSEMBLE)
    for row in rows:
        lines.append(
            f"{row['detector']:18s} {_fmt(row['precision']):>6s} {_fmt(row['recall']):>7s} "
            f"{_fmt(row['f1']):>6s} {_fmt(row['ttd_p50_s'], 0):>6s} "
            f"{_fmt(row['false_alarms_per_service_day']):>10s}"
        )
    if board["invisible"]:
        lines += ["", "invisible in the features (not in the targets):"]
        for row in board["invisible"]:
            lines.append(f"  {row['anomaly_type']}: {row['reason']}")
    return "\n".join(lines)


def publish(board: dict[str, Any], settings: Settings) -> str:
    from stages.common.aws import client

    bucket = resources.models_bucket(settings)
    client("s3", settings).put_object(
        Bucket=bucket,
        Key=SCOREBOARD_KEY,
        Body=json.dumps(board, indent=2).encode(),
        ContentType="application/json",
    )
    return f"s3://{bucket}/{SCOREBOARD_KEY}"


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Score the detection ensemble against the ground truth of a seeded labelled "
        "history (event precision, recall, F1, time to detect, false alarms per service per day, "
        "per anomaly type and per detector).",
    )
    p.add_argument("--seed", type=int, default=1, help="history seed (1)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small history (2 services, 1.5 learning hours, 1 test hour with 3 windows, "
        "half an hour of normal traffic): checks the command, not the detectors",
    )
    p.add_argument("--publish", action="store_true", help=f"also write {SCOREBOARD_KEY} to S3")
    p.add_argument("--out", type=Path, help="result file (default benchmarks/results/...)")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="services scored at once, each in its own process (default: the CPU count)",
    )
    p.add_argument(
        "--cache", type=Path, help="keep the generated history here and reuse it (tuning)"
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.detection") -> int:
    args = parser(prog).parse_args(argv)
    settings = get_settings()
    layout = QUICK if args.quick else Layout()
    board = run(args.seed, layout, settings, args.cache, not args.quick, max(1, args.jobs))
    print(table(board))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(board, indent=2) + "\n")
        path = args.out
    else:
        from benchmarks.common import write_result

        path = write_result("detection", board)
    print(f"\nwritten: {path}")
    if args.publish:
        print(f"published: {publish(board, settings)}")
    timings = board["timings"]
    print(
        f"run time: {timings['total_s']:.0f} s (history {timings['history_s']:.0f} s, "
        f"detection {timings['detection_s']:.0f} s)"
    )
    quick = " --quick" if args.quick else ""
    print(f"rerun: .venv/bin/python -m benchmarks.detection --seed {args.seed}{quick}")
    return 0

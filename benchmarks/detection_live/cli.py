"""``python -m benchmarks.detection_live``: the command, its report and its result file."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info, percentile, write_result
from benchmarks.detection_live.run import SERVICES, TRIGGER_TYPES, LiveRun, Options
from benchmarks.freshness import parse_env
from tests.support.processes import ROOT

TARGET_P50_S = 60.0
SPLITS = (
    ("event_time_s", "window start -> end of the opening bucket (event time):"),
    ("to_features_s", "bucket end -> features commit holding it:"),
    ("to_alert_sent_s", "features commit -> alert sent by detection:"),
    ("delivery_s", "alert sent -> received:"),
)
QUICK = Options(
    triggers=1,
    services=("payment-service",),
    types=("cpu_spike",),
    history_minutes=40.0,
    history_resolution_seconds=5.0,
    rate=60,
    settle_seconds=15.0,
    timeout_seconds=180.0,
)


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "p50_s": round(percentile(ordered, 50), 1),
        "p90_s": round(percentile(ordered, 90), 1),
        "max_s": round(ordered[-1], 1),
    }


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in result["triggers"] if r["detected"]]
    splits = {
        name: summary([r["split"][name] for r in rows if r["split"].get(name) is not None])
        for name, _ in SPLITS
    }
    ttd = summary([r["ttd_s"] for r in rows])
    return {
        "triggers": len(result["triggers"]),
        "detected": len(rows),
        "misses": len(result["triggers"]) - len(rows),
        "ttd_sqs": ttd,
        "ttd_api": summary([r["api_ttd_s"] for r in rows if r.get("api_ttd_s") is not None]),
        "split": splits,
        "false_alarms": len(result["false_alarms"]),
        "target_p50_s": TARGET_P50_S,
        "met": bool(ttd is not None and ttd["p50_s"] <= TARGET_P50_S and len(rows) > 0),
    }


def rerun_command(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python -m benchmarks.detection_live"]
    if args.quick:
        parts.append("--quick")
    else:
        parts += [f"--triggers {args.triggers}", f"--rate {args.rate}"]
    parts += [f"--env {k}={v}" for k, v in sorted(args.env.items())]
    return " ".join(parts)


def _fmt(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    return f"p50 {stats['p50_s']:g} s, p90 {stats['p90_s']:g} s, max {stats['max_s']:g} s"


def report(result: dict[str, Any], path: Path) -> str:
    s = result["summary"]
    live, live_late = result["run"]["live"], result["run"]["live_late_records"]
    lines = [
        "",
        f"{'type':22s} {'service':16s} {'ttd s':>6s} {'api s':>6s} {'event':>6s} "
        f"{'feat':>6s} {'detect':>6s} {'sqs':>5s}  voters",
    ]
    for r in result["run"]["triggers"]:
        if not r["detected"]:
            lines.append(f"{r['anomaly_type']:22s} {r['service']:16s} {'MISS':>6s}")
            continue
        sp = r["split"]
        cells = [r["ttd_s"], r.get("api_ttd_s"), sp["event_time_s"], sp["to_features_s"],
                 sp["to_alert_sent_s"], sp["delivery_s"]]  # fmt: skip
        text = " ".join(f"{'-' if c is None else f'{c:g}':>6s}" for c in cells[:5])
        text += f" {'-' if cells[5] is None else f'{cells[5]:g}':>5s}"
        lines.append(f"{r['anomaly_type']:22s} {r['service']:16s} {text}  "
                     f"{','.join(r.get('voters') or [])}")  # fmt: skip
    lines += [
        "",
        f"time to detect (window start -> SQS open message received): {_fmt(s['ttd_sqs'])}",
        f"time to detect (window start -> listed in /api/anomalies):   {_fmt(s['ttd_api'])}",
        *(f"  {label:54s} {_fmt(s['split'][name])}" for name, label in SPLITS),
        f"detected {s['detected']}/{s['triggers']}, misses {s['misses']}, "
        f"false alarms {s['false_alarms']} (open alerts matching no trigger)",
        f"late records (etl_features_late_records_total): "
        f"{result['run']['etl_features']['late_records']} in all, "
        f"{live_late['late_records']} of the {live_late['records_produced']} live records "
        f"generated from the first trigger on; live rate {live['measured_rate']}/s",
        f"settings: {result['run']['settings']}",
        f"target: p50 <= {TARGET_P50_S:g} s: {'met' if s['met'] else 'NOT met'}",
        f"JSON: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}",
        f"rerun: {result['rerun']}",
    ]  # fmt: skip
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.detection_live",
        description="Time to detect in live mode: a private fleet (Stage 00, Kinesis, consumer, "
        "ETL, detection) learns from a generated history, then anomalies triggered on live "
        "traffic are timed from their ground-truth window start to the SQS open alert.",
    )
    p.add_argument("--triggers", type=int, default=6, help="anomaly triggers (6)")
    p.add_argument("--rate", type=int, default=150, help="live records/s over the services (150)")
    p.add_argument("--history-minutes", type=float, default=60.0,
                   help="history learned before detection starts (60)")  # fmt: skip
    p.add_argument("--settle", type=float, default=120.0,
                   help="seconds of live traffic before the first trigger (120)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="history and live generation seed (1)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting for every service of the fleet (repeatable)")  # fmt: skip
    p.add_argument(
        "--quick",
        action="store_true",
        help="one service, 40 min of history, one cpu_spike: checks the path",
    )
    p.add_argument("--out", type=Path, help="result file (default benchmarks/results/...)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.env = parse_env(args.env)
    except argparse.ArgumentTypeError as exc:
        parser().error(str(exc))
    if args.triggers < 1 or args.rate < 1 or args.history_minutes <= 0 or args.settle < 0:
        parser().error("--triggers, --rate and --history-minutes must be positive")
    if args.quick:
        options = Options(**{**QUICK.__dict__, "env": args.env})
    else:
        options = Options(
            triggers=args.triggers,
            services=SERVICES,
            types=TRIGGER_TYPES,
            history_minutes=args.history_minutes,
            rate=args.rate,
            settle_seconds=args.settle,
            seed=args.seed,
            env=args.env,
        )
    logging.getLogger("pyiceberg.io").setLevel(logging.WARNING)
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="ttd-live-"))
    live = LiveRun(options, root)
    try:
        run = live.run()
    except BaseException:
        print(f"the run failed; the fleet's logs are in {root / 'run' / 'logs'}", flush=True)
        raise
    finally:
        live.stop()
    shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "path": "orchestrator (continuous + trigger) -> Log Synthesis -> Ingestion -> Kinesis "
        "(emulator) -> consumer -> raw zone -> ETL -> telemetry.features -> detection -> SQS",
        "env": args.env,
        "run": run,
        "wall_s": round(time.monotonic() - began, 1),
        "rerun": rerun_command(args),
    }
    result["summary"] = summarise(run)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        path = args.out
    else:
        path = write_result("detection-live", result)
    print(report(result, path), flush=True)
    return 0 if result["summary"]["detected"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Soak: the whole fleet at a steady rate for a long time, every process's memory sampled.

    .venv/bin/python -m benchmarks.soak                              # 3,000 records/s, 1 hour
    .venv/bin/python -m benchmarks.soak --rate 1000 --duration 600 --sample-every 30
    .venv/bin/python -m benchmarks.soak --rate 50 --duration 20 --sample-every 2 --baseline 5

A private fleet (free ports, RUN_DIR and DATA_DIR under benchmarks/results/soak-fleet/, started
the way ./start.sh starts it) runs continuous generation at ``--rate`` records/s for
``--duration`` seconds: orchestrator -> synthesis -> ingestion -> Kinesis -> consumer -> S3.
Every ``--sample-every`` seconds (60 by default) the RSS and PSS of every service (with its
children) is recorded. After generation the consumer is given ``--drain-seconds`` to write what
ingestion accepted.

The verdict: from the sample at ``--baseline`` seconds (300: after the first five minutes, when
caches, pools and the interpreter's arenas have grown to their working size) to the last one, no
process's RSS grows by more than ``--max-growth`` per cent (10). Records offered (produced by
the generator), accepted (by ingestion) and landed (written to S3 by the consumer) are reported
beside it; a run that lost records fails too.

Prints a table and writes JSON to benchmarks/results/soak-<timestamp>.json; the exit status is 0
only when the run passed.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import (
    RESULTS_DIR,
    _tree_pss,
    _tree_rss,
    machine_info,
    pids_in,
    write_result,
)
from benchmarks.pipeline import PipelineFleet

TICK_SECONDS = 0.25


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--rate", type=int, default=3000, help="records/s (default 3000)")
    parser.add_argument("--duration", type=float, default=3600, help="seconds (default 3600)")
    parser.add_argument(
        "--sample-every", type=float, default=60, help="seconds between samples (default 60)"
    )
    parser.add_argument(
        "--baseline",
        type=float,
        default=300,
        help="seconds into the run of the sample growth is measured from (default 300)",
    )
    parser.add_argument(
        "--max-growth", type=float, default=10.0, help="per cent allowed per process (10)"
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=120, help="wait for the consumer after the run"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=RESULTS_DIR / "soak-fleet",
        help="the fleet's RUN_DIR and DATA_DIR go under it (wiped first)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; no result file")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.sample_every <= 0:
        parser.error("--rate, --duration and --sample-every must be positive")
    if args.baseline >= args.duration:
        parser.error("--baseline must be shorter than --duration")
    return args


def sample(run_dir: Path, cache: dict[int, psutil.Process]) -> dict[str, dict[str, float]]:
    """RSS and PSS (MB) of every service of the fleet, with its children."""
    out: dict[str, dict[str, float]] = {}
    for name, pid in sorted(pids_in(run_dir).items()):
        with contextlib.suppress(psutil.Error):
            proc = cache.get(pid) or cache.setdefault(pid, psutil.Process(pid))
            entry = {"rss_mb": round(_tree_rss(proc) / 2**20, 1)}
            with contextlib.suppress(psutil.Error, AttributeError):
                entry["pss_mb"] = round(_tree_pss(proc) / 2**20, 1)
            out[name] = entry
    return out


def growth(samples: list[dict[str, Any]], baseline: float, limit: float) -> dict[str, Any]:
    """Per process: RSS at the first sample at or after ``baseline`` seconds and at the last
    sample, the growth between them in per cent, and whether it is within ``limit``."""
    start = next((s for s in samples if s["t"] >= baseline), samples[-1])
    end = samples[-1]
    verdicts: dict[str, Any] = {}
    for name, entry in end["processes"].items():
        first = start["processes"].get(name)
        if first is None:
            continue
        grown = 100 * (entry["rss_mb"] - first["rss_mb"]) / max(first["rss_mb"], 1e-6)
        verdicts[name] = {
            "rss_mb_at_baseline": first["rss_mb"],
            "rss_mb_at_end": entry["rss_mb"],
            "pss_mb_at_baseline": first.get("pss_mb"),
            "pss_mb_at_end": entry.get("pss_mb"),
            "growth_percent": round(grown, 2),
            "passed": grown <= limit,
        }
    return {"baseline_t": start["t"], "end_t": end["t"], "processes": verdicts}


def soak(args: argparse.Namespace) -> dict[str, Any]:
    fleet = PipelineFleet(args.root)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "rate": args.rate,
        "duration_s": args.duration,
        "sample_every_s": args.sample_every,
        "baseline_s": args.baseline,
        "max_growth_percent": args.max_growth,
        "load_average_at_start": machine_info()["load_average"],
    }
    samples: list[dict[str, Any]] = []
    cache: dict[int, psutil.Process] = {}
    try:
        print("starting the fleet ...", flush=True)
        took, _ = fleet.start()
        result["start_to_healthy_s"] = round(took, 2)
        accepted_before = fleet.ingestion_counters().get("accepted", 0)
        landed_before = fleet.consumer_records_out()
        # Ticks of about TICK_SECONDS, each a whole number of records, at exactly --rate.
        per_tick = max(1, round(args.rate * TICK_SECONDS))
        body = {"interval_seconds": per_tick / args.rate, "logs_per_interval": per_tick,
                "duration_seconds": args.duration}  # fmt: skip
        orchestrator = fleet.run.url("scenario-orchestrator")
        fleet.http.post(orchestrator + "/api/continuous/start", json=body).raise_for_status()
        began = time.monotonic()
        print(f"generating {args.rate:,} records/s for {args.duration:g} s, "
              f"sampling every {args.sample_every:g} s", flush=True)  # fmt: skip
        next_sample = began
        stats: dict[str, Any] = {}
        while True:
            now = time.monotonic()
            if now >= next_sample:
                t = round(now - began, 1)
                processes = sample(fleet.run.run_dir, cache)
                samples.append({"t": t, "processes": processes})
                total = sum(p["rss_mb"] for p in processes.values())
                print(f"  t={t:7.0f}s  total RSS {total:7.1f} MB  "
                      + "  ".join(f"{n} {p['rss_mb']:.0f}" for n, p in processes.items()),
                      flush=True)  # fmt: skip
                next_sample += args.sample_every
            stats = fleet.get("scenario-orchestrator", "/api/continuous/stats")
            if not stats["running"]:
                break
            if now - began > args.duration + 300:
                fleet.http.post(orchestrator + "/api/continuous/stop")
                raise RuntimeError("generation still running 300 s after its duration")
            time.sleep(min(1.0, max(0.05, next_sample - time.monotonic())))
        # The end of the run is the last sample: taken now, before the drain.
        samples.append(
            {"t": round(time.monotonic() - began, 1), "processes": sample(fleet.run.run_dir, cache)}
        )
        accepted = fleet.ingestion_counters().get("accepted", 0) - accepted_before
        drained = fleet.wait_delivered(landed_before, accepted, args.drain_seconds)
        landed = fleet.consumer_records_out() - landed_before
        result["records"] = {
            "offered": stats.get("records_produced"),
            "failed": stats.get("records_failed"),
            "skipped": stats.get("records_skipped"),
            "accepted": accepted,
            "landed": landed,
            "drain_s": None if drained is None else round(drained, 1),
            "achieved_rate": stats.get("measured_rate"),
        }
    finally:
        fleet.stop()
    result["samples"] = samples
    result["memory"] = growth(samples, args.baseline, args.max_growth)
    records = result["records"]
    result["records_passed"] = (
        records["offered"] == records["accepted"] == records["landed"]
        and not records["failed"]
        and not records["skipped"]
    )
    result["passed"] = result["records_passed"] and all(
        p["passed"] for p in result["memory"]["processes"].values()
    )
    result["machine"] = machine_info()
    return result


def print_report(result: dict[str, Any], path: Path | None) -> None:
    memory = result["memory"]
    print()
    print(f"soak: {result['rate']:,} records/s for {result['duration_s']:g} s; RSS growth from "
          f"t={memory['baseline_t']:g}s to t={memory['end_t']:g}s "
          f"(limit {result['max_growth_percent']:g} %)")  # fmt: skip
    print(f"  {'process':<24} {'RSS base':>9} {'RSS end':>9} {'growth':>8} {'PSS end':>9}")
    for name, p in memory["processes"].items():
        mark = "ok" if p["passed"] else "FAIL"
        pss = "-" if p["pss_mb_at_end"] is None else f"{p['pss_mb_at_end']:.1f}"
        print(f"  {name:<24} {p['rss_mb_at_baseline']:>9.1f} {p['rss_mb_at_end']:>9.1f} "
              f"{p['growth_percent']:>7.2f}% {pss:>9}  {mark}")  # fmt: skip
    r = result["records"]
    verdict = "ok" if result["records_passed"] else "FAIL"
    print(f"  records: offered {r['offered']:,}, accepted {r['accepted']:,}, "
          f"landed {r['landed']:,} (failed {r['failed']}, skipped {r['skipped']}; "
          f"achieved {r['achieved_rate']:,} /s)  {verdict}")  # fmt: skip
    print(f"  {'PASSED' if result['passed'] else 'FAILED'}")
    if path is not None:
        print(f"  written to {path}")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Stopped by a signal, the run still stops its fleet (a background job starts with SIGINT
    # ignored, and SIGTERM would otherwise end the process without its cleanup).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    result = soak(args)
    result["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path = None if args.no_write else write_result("soak", result)
    print_report(result, path)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()

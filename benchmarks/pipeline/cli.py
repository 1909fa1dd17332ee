"""The whole pipeline, measured end to end: orchestrator -> synthesis -> ingestion -> Kinesis ->
consumer -> S3, on a private fleet started the way ./start.sh starts it.

    .venv/bin/python -m benchmarks.pipeline            # 6-10 minutes, more on a busy machine
    .venv/bin/python -m benchmarks.pipeline --quick    # short steps, a smoke run (~2 minutes)
    .venv/bin/python -m benchmarks.pipeline --steps 8000,10000 --step-seconds 30 --skip-latency

Figures (each beside its target; the exit status is 0 only when every measured target is met):

- start to healthy: wall time of ``python -m stages.ops.fleet start`` (every built service,
  private ports, RUN_DIR and DATA_DIR under benchmarks/results/pipeline-fleet/) until it returns,
  i.e. until each service answered its health check. The virtualenv is already installed.
- latency at 1,000 records/s (continuous generation, 0.1 s ticks, default settings): a poller
  lists the three raw buckets back to back (the objects are read afterwards); a record's
  latency is the wall time of the listing that first showed its object minus its ``timestamp``. The
  generator stamps a tick's records across the tick ahead of it, so a timestamp is at most one
  tick (0.1 s) later than the moment the record was made; a listing cycle's duration (printed)
  is the other part of the resolution, and it is an upper bound.
- highest sustained rate: continuous generation stepped up (1k, 2k, 4k, 6k, 8k, 10k, 12k, 15k,
  20k records/s by default, 20 s each), stopping at the first step that is not sustained.
  A step is *sustained* when (1) the generator's achieved rate is within 5 % of the request
  with nothing failed or skipped, (2) the Ingestion Interface accepted every produced record,
  (3) every accepted record (by ``event_id``, per kind) is in its S3 bucket exactly once, and
  (4) the last of them was in S3 within ``--drain-seconds`` (5 s, the p99 latency target) after
  the generator's last call returned. The end-to-end rate printed beside it is records /
  (generation time + drain time).
- peak RSS: every process of the fleet (pid files in the RUN_DIR, with their children) sampled
  4 times a second for the whole run; the total is the largest sum at one instant.
- CPU: each process's CPU time over a step, as % of one core and as CPU-ms per 1,000 records
  (a cost that depends far less on other load than a rate does), and the rate at which that
  cost would keep every core of the machine busy.
- stored bytes per record: bytes of the objects in each raw bucket / records in them, plain
  (the latency phase and the steps) and gzip (the consumer restarted with COMPRESSION=gzip and
  FLUSH_MAX_AGE_SECONDS=10, as a lake kept for storage would run it, then 1,000 records/s;
  ``--gzip-flush-age 1`` measures it with the latency-oriented default of 1 s objects).
- ``--profile``: after the steps, one more generation run (at ``--profile-rate``) while py-spy
  samples the hottest processes of the last step; collapsed stacks and their top functions go
  to benchmarks/results/profile-<timestamp>/.

Prints a table and writes JSON to benchmarks/results/pipeline-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    FleetSampler,
    machine_info,
    reference_loop_ms,
    write_result,
)
from benchmarks.lake import AcceptedLedger, LakeWatcher, buckets_by_kind
from benchmarks.pipeline.fleet import PipelineFleet
from benchmarks.pipeline.report import print_report, verdicts
from benchmarks.pipeline.steps import (
    DELIVERY_WAIT_CAP,
    GZIP_FLUSH_AGE,
    Bench,
    highest_sustained,
    profile_hottest,
)
from stages.common import aws

DEFAULT_STEPS = (1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000, 20000)
QUICK_STEPS = (1000, 5000)


def rate_list(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text}") from exc
    if not rates or any(r < 1 or r > 40_000 for r in rates):
        raise argparse.ArgumentTypeError("rates must be 1..40000 records/s")
    return rates


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short steps: a smoke run")
    parser.add_argument("--steps", type=rate_list, help="rates to step through, e.g. 5000,10000")
    parser.add_argument("--step-seconds", type=float, help="length of a step (default 20, quick 5)")
    parser.add_argument(
        "--drain-seconds", type=float, default=5.0,
        help="bound on the time from a step's end until all its records are in S3",
    )  # fmt: skip
    parser.add_argument("--latency-seconds", type=float, help="latency run (default 30, quick 8)")
    parser.add_argument("--gzip-seconds", type=float, help="gzip run (default 30, quick 12)")
    parser.add_argument(
        "--gzip-flush-age", type=float, default=GZIP_FLUSH_AGE,
        help=f"FLUSH_MAX_AGE_SECONDS of the gzip run (default {GZIP_FLUSH_AGE:g}; the consumer's "
        "own default, 1 s, is for latency)",
    )  # fmt: skip
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-steps", action="store_true")
    parser.add_argument("--skip-gzip", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the hottest processes after the steps")  # fmt: skip
    parser.add_argument("--profile-rate", type=int, default=8000)
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--profile-processes", type=int, default=3)
    args = parser.parse_args(argv)
    defaults = {
        "steps": list(QUICK_STEPS if args.quick else DEFAULT_STEPS),
        "step_seconds": 5.0 if args.quick else 20.0,
        "latency_seconds": 8.0 if args.quick else 30.0,
        "gzip_seconds": 12.0 if args.quick else 30.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.profile and args.skip_steps:
        parser.error("--profile profiles the hottest processes of the last step: keep the steps")
    if not 0.1 <= args.gzip_flush_age <= 600:
        parser.error("--gzip-flush-age must be 0.1..600 seconds")
    for name in ("step_seconds", "latency_seconds", "gzip_seconds", "drain_seconds"):
        if getattr(args, name) < 1 or getattr(args, name) > 3600:
            parser.error(f"--{name.replace('_', '-')} must be 1..3600 seconds")
    return args


def rerun_command(argv: list[str]) -> str:
    return " ".join(["python -m benchmarks.pipeline", *argv])


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    fleet = PipelineFleet(RESULTS_DIR / "pipeline-fleet")
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": machine_info()["load_average"],
        "reference_loop_ms_at_start": reference_loop_ms(),
        "buckets": buckets_by_kind(fleet.settings),
    }
    bench = Bench(
        fleet,
        FleetSampler(fleet.run.run_dir),
        AcceptedLedger(fleet.data_dir / "categories"),
        LakeWatcher(aws.client("s3", fleet.settings), result["buckets"]),
        list(result["buckets"]),
    )
    try:
        print("starting the fleet ...", flush=True)
        took, per_service = fleet.start()
        result["start_to_healthy_s"] = round(took, 2)
        result["healthy_after_s"] = per_service
        with bench.sampler:
            measure(bench, args, result)
    finally:
        # Also after a failed start or Ctrl-C: the services run in their own sessions.
        fleet.stop()
    result["stored_bytes_per_record"] = {
        "plain": bench.plain.per_record(),
        "gzip": bench.gzip.per_record(),
    }
    result["peak_rss_mb"] = {
        name: round(mb, 1) for name, mb in sorted(bench.sampler.peak_mb.items())
    }
    result["peak_rss_mb"]["total"] = round(bench.sampler.peak_total_mb, 1)
    result["peak_rss_mb"]["total_without_emulator"] = round(
        bench.sampler.peak_without_emulator_mb, 1
    )
    result["peak_total_pss_mb"] = round(bench.sampler.peak_total_pss_mb, 1)
    result["peak_total_rss_mb_by_phase"] = {
        phase: round(mb, 1) for phase, mb in bench.sampler.phase_peak_total_mb.items()
    }
    result["rss_samples"] = bench.sampler.samples
    result["machine"] = machine_info()
    result["options"] = dict(vars(args))
    result["rerun"] = rerun_command(argv)
    result["targets"] = [vars(v) for v in verdicts(result)]
    return result


def measure(bench: Bench, args: argparse.Namespace, result: dict[str, Any]) -> None:
    if not args.skip_latency:
        print(f"latency: 1,000 records/s for {args.latency_seconds:g} s ...", flush=True)
        result["latency"] = bench.latency(1000, args.latency_seconds)
    if not args.skip_steps:
        result["steps"] = run_steps(bench, args)
        result["highest_sustained_per_s"] = highest_sustained(result["steps"])
    if args.profile:
        print(f"profile: {args.profile_rate:,}/s with py-spy ...", flush=True)
        result["profile"] = profile_hottest(
            bench, result.get("steps", []), args.profile_rate,
            args.profile_seconds, args.profile_processes,
        )  # fmt: skip
    if not args.skip_gzip:
        print(
            f"storage: gzip, {args.gzip_flush_age:g} s objects, 1,000 records/s for "
            f"{args.gzip_seconds:g} s ...",
            flush=True,
        )
        bench.gzip_storage(1000, args.gzip_seconds, DELIVERY_WAIT_CAP, args.gzip_flush_age)


def run_steps(bench: Bench, args: argparse.Namespace) -> list[dict[str, Any]]:
    steps = []
    for rate in args.steps:
        print(f"step: {rate:,} records/s for {args.step_seconds:g} s ...", flush=True)
        step = bench.step(rate, args.step_seconds, args.drain_seconds)
        steps.append(step)
        print(f"  {step['verdict']} (reference loop {step['reference_loop_ms']:g} ms)", flush=True)
        if not step["sustained"]:
            break
    return steps


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    result = run(args, argv)
    path = write_result("pipeline", result)
    print_report(result, path)
    # Targets of skipped phases do not count; a missed one makes the exit status 1.
    sys.exit(1 if any(t["met"] is False for t in result["targets"]) else 0)


if __name__ == "__main__":
    main()

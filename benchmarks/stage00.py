"""Stage 00 benchmark: the continuous generator's accuracy and the fleet's highest sustained rate.

    .venv/bin/python -m benchmarks.stage00            # about 3 minutes
    .venv/bin/python -m benchmarks.stage00 --quick    # fewer, shorter steps

Starts the six Stage 00 services and the emulator with the fleet CLI (private ports, RUN_DIR and
DATA_DIR under benchmarks/results/; ``--whole-fleet`` adds the consumer and the dashboard, which
are not on the path into Kinesis but share the CPU), then:

- accuracy: continuous generation at 100 ... 5,000 records/s; the orchestrator's measured rate
  (records synthesis produced / elapsed) against the requested rate;
- ceiling: steps the requested rate up; a step passes when the measured rate is within 5 % of
  the request, the generator kept up, and every record the orchestrator produced was accepted
  by the Ingestion Interface and acknowledged by Kinesis (nothing spooled, nothing rejected).

Prints a table and writes JSON next to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.common import RESULTS_DIR, pids_in
from tests.ops.support import private_fleet
from tests.support.processes import ROOT

INTERVAL = 0.25  # seconds between ticks; logs_per_interval = rate * INTERVAL


class Bench:
    def __init__(self, root: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)
        self.run = private_fleet(root)

    def url(self, service: str) -> str:
        return self.run.url(service)

    def start(self, services: list[str]) -> float:
        began = time.monotonic()
        result = self.run.cli("start", *services, timeout=300)
        if result.returncode != 0:
            raise SystemExit(f"fleet did not start:\n{result.stdout}\n{result.stderr}")
        return time.monotonic() - began

    def stop(self) -> None:
        self.run.cli("stop", "--timeout", "30")

    def ingestion_counters(self) -> dict[str, int]:
        body = httpx.get(self.url("ingestion-interface") + "/api/metrics", timeout=10).json()
        return body["counters"] | {"spool_bytes": body["spool_bytes"]}

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for name, pid in pids_in(self.run.run_dir).items():
            try:
                out[name] = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.Error:
                continue
        return out

    def generate(self, rate: int, seconds: float) -> dict[str, Any]:
        orchestrator = self.url("scenario-orchestrator")
        before = self.ingestion_counters()
        body = {
            "interval_seconds": INTERVAL,
            "logs_per_interval": max(1, round(rate * INTERVAL)),
            "duration_seconds": seconds,
            "seed": rate,
        }
        resp = httpx.post(orchestrator + "/api/continuous/start", json=body, timeout=10)
        resp.raise_for_status()
        peak_rss: dict[str, float] = {}
        while True:
            time.sleep(0.5)
            for name, mb in self.rss_mb().items():
                peak_rss[name] = max(peak_rss.get(name, 0.0), mb)
            stats = httpx.get(orchestrator + "/api/continuous/stats", timeout=10).json()
            if not stats["running"]:
                break
        time.sleep(1.0)  # let the last batches through ingestion
        after = self.ingestion_counters()
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        requested = body["logs_per_interval"] / INTERVAL
        measured = stats["measured_rate"]
        produced = stats["records_produced"]
        return {
            "requested_per_s": round(requested),
            "measured_per_s": round(measured, 1),
            "error_pct": round(100 * (measured - requested) / requested, 2),
            "can_keep_up": stats["can_keep_up"],
            "produced": produced,
            "accepted": delta.get("accepted", 0),
            "to_kinesis": delta.get("to_kinesis", 0),
            "spooled": delta.get("spooled", 0),
            "rejected": delta.get("rejected", 0),
            "peak_rss_mb": {k: round(v, 1) for k, v in sorted(peak_rss.items())},
        }


def step_passes(step: dict[str, Any]) -> bool:
    return (
        abs(step["error_pct"]) <= 5
        and step["can_keep_up"]
        and step["produced"] == step["accepted"] == step["to_kinesis"]
        and step["spooled"] == 0
        and step["rejected"] == 0
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stage00", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--whole-fleet",
        action="store_true",
        help="also run the Kinesis consumer and the dashboard (they compete for the CPU)",
    )
    args = parser.parse_args(argv)
    # The orchestrator's dependencies are the rest of Stage 00 and the emulator.
    services = [] if args.whole_fleet else ["scenario-orchestrator"]
    seconds = 5.0 if args.quick else 10.0
    accuracy_rates = [100, 1000, 5000] if args.quick else [100, 500, 1000, 2000, 5000]
    ceiling_rates = [5000, 10000] if args.quick else [5000, 7500, 10000, 12500, 15000, 20000]

    out_dir = RESULTS_DIR
    bench = Bench(out_dir / "stage00-fleet")
    startup = bench.start(services)
    accuracy: list[dict[str, Any]] = []
    ceiling: list[dict[str, Any]] = []
    try:
        for rate in accuracy_rates:
            print(f"accuracy at {rate}/s ...", flush=True)
            accuracy.append(bench.generate(rate, seconds))
        for rate in ceiling_rates:
            print(f"ceiling step {rate}/s ...", flush=True)
            step = bench.generate(rate, seconds)
            ceiling.append(step)
            if not step_passes(step):
                break
    finally:
        bench.stop()

    passing = [s["requested_per_s"] for s in ceiling if step_passes(s)]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": psutil.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "services": "whole fleet" if args.whole_fleet else "Stage 00 and the emulator",
        "fleet_start_seconds": round(startup, 1),
        "accuracy": accuracy,
        "ceiling_steps": ceiling,
        "highest_sustained_per_s": max(passing, default=0),
        "rerun": "python -m benchmarks.stage00"
        + (" --quick" if args.quick else "")
        + (" --whole-fleet" if args.whole_fleet else ""),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"stage00-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nstart of {result['services']} (installed): {startup:.1f} s")
    print(f"{'requested/s':>12} {'measured/s':>11} {'error %':>8} {'kept up':>8} "
          f"{'produced':>9} {'accepted':>9} {'kinesis':>9} {'spooled':>8}  phase")  # fmt: skip
    for phase, steps in (("accuracy", accuracy), ("ceiling", ceiling)):
        for s in steps:
            print(
                f"{s['requested_per_s']:>12} {s['measured_per_s']:>11} {s['error_pct']:>8} "
                f"{s['can_keep_up']!s:>8} {s['produced']:>9} {s['accepted']:>9} "
                f"{s['to_kinesis']:>9} {s['spooled']:>8}  {phase}"
            )
    print(f"\nhighest sustained rate into Kinesis: {result['highest_sustained_per_s']:,} records/s"
          " (target >= 10,000)")  # fmt: skip
    last = (ceiling or accuracy)[-1]
    print(f"peak RSS at {last['requested_per_s']}/s (MB): {last['peak_rss_mb']}")
    print(f"JSON: {path.relative_to(ROOT)}\nrerun: .venv/bin/{result['rerun']}")
    sys.exit(0 if all(abs(s["error_pct"]) <= 5 for s in accuracy) else 1)


if __name__ == "__main__":
    main()

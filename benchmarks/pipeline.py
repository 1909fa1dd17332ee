"""The whole pipeline, measured end to end: orchestrator -> synthesis -> ingestion -> Kinesis ->
consumer -> S3, on a private fleet started the way ./start.sh starts it.

    .venv/bin/python -m benchmarks.pipeline            # 6-10 minutes, more on a busy machine
    .venv/bin/python -m benchmarks.pipeline --quick    # short steps, a smoke run (~2 minutes)
    .venv/bin/python -m benchmarks.pipeline --steps 8000,10000 --step-seconds 30 --skip-latency

Figures (each beside its target; the exit status is 0 only when every measured target is met):

- start to healthy: wall time of ``python -m stages.common.fleet start`` (every built service,
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
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.common import (
    RESULTS_DIR,
    CpuWindow,
    FleetSampler,
    machine_info,
    percentile,
    reference_loop_ms,
    write_result,
)
from benchmarks.lake import (
    AcceptedLedger,
    LakeDelta,
    LakeWatcher,
    Listed,
    buckets_by_kind,
    epoch_seconds,
)
from benchmarks.profiling import start_recording, summarize
from stages.common import aws
from stages.common.config import Settings
from stages.common.lake import is_gzip
from tests.ops.support import FleetRun, private_fleet
from tests.support.processes import ROOT

DEFAULT_STEPS = (1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000, 20000)
QUICK_STEPS = (1000, 5000)
STEP_INTERVAL = 0.25  # seconds between generator ticks during the steps
LATENCY_INTERVAL = 0.1  # shorter ticks: a record's timestamp is at most this after its making
POLL_EVERY = 0.1  # seconds from one lake listing to the next, at the least
RATE_TOLERANCE = 0.05
# A lake kept gzipped is written for storage, not latency: objects of 10 s hold ~10 times the
# records of the consumer's default 1 s ones, and gzip needs lines to compress against.
GZIP_FLUSH_AGE = 10.0
DELIVERY_WAIT_CAP = 120.0  # how long a step waits for stragglers after its drain bound, to report
CONSUMER = "kinesis-consumer"


@dataclass(frozen=True)
class Target:
    figure: str
    limit: float
    at_least: bool = False

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.limit if self.at_least else value <= self.limit

    @property
    def text(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:,g}"


TARGETS = {
    "sustained_rate": Target("highest sustained end-to-end rate (records/s)", 10_000, True),
    "latency_p50": Target("latency p50 at 1,000/s (s)", 2.0),
    "latency_p99": Target("latency p99 at 1,000/s (s)", 5.0),
    "total_rss": Target("peak RSS, all processes (MB)", 700),
    "bytes_plain": Target("stored bytes/record plain", 500),
    "bytes_gzip": Target("stored bytes/record gzip", 100),
    "start_seconds": Target("start to all healthy (s)", 20),
}


# --- the fleet ----------------------------------------------------------------------------------
@dataclass
class Generation:
    requested_per_s: float
    stats: dict[str, Any]
    ended: float  # monotonic; at most one stats poll after the generator's last call returned

    @property
    def achieved_per_s(self) -> float:
        return float(self.stats["measured_rate"])

    @property
    def seconds(self) -> float:
        return float(self.stats["elapsed_seconds"])


class PipelineFleet:
    """A private fleet (free ports, its own RUN_DIR and DATA_DIR) driven over its HTTP APIs."""

    def __init__(self, root: Path) -> None:
        self.run: FleetRun = private_fleet(root)
        if self.run.run_dir.exists():
            # A benchmark killed outright leaves its fleet running: stop what its pid files name.
            self.run.cli("stop", "--timeout", "30", timeout=600)
        shutil.rmtree(root, ignore_errors=True)
        self.data_dir = root / "data"
        self.settings = Settings(aws_endpoint_url=f"http://127.0.0.1:{self.run.emulator_port}")
        self.http = httpx.Client(timeout=30)

    def start(self) -> tuple[float, dict[str, float]]:
        """Seconds until ``fleet start`` returned (all healthy), and each service's own time
        to healthy as the CLI reports it (counted from the start of its dependency level)."""
        began = time.monotonic()
        result = self.run.cli("start", timeout=300)
        took = time.monotonic() - began
        if result.returncode != 0:
            raise RuntimeError(f"the fleet did not start:\n{result.stdout}\n{result.stderr}")
        return took, healthy_after(result.stdout)

    def stop(self) -> None:
        self.run.cli("stop", "--timeout", "30", timeout=600)
        self.http.close()

    def restart_consumer(self, **env: str) -> None:
        self.run.cli("stop", CONSUMER, timeout=120)
        result = self.run.cli("start", CONSUMER, timeout=120, **env)
        if result.returncode != 0:
            raise RuntimeError(f"the consumer did not restart:\n{result.stdout}")

    def get(self, service: str, path: str) -> dict[str, Any]:
        resp = self.http.get(self.run.url(service) + path)
        if service != CONSUMER:  # the consumer's /health is 503 while it starts, with the body
            resp.raise_for_status()
        return resp.json()

    def consumer_records_out(self) -> int:
        return int(self.get(CONSUMER, "/health")["records_out"])

    def ingestion_counters(self) -> dict[str, int]:
        return self.get("ingestion-interface", "/api/metrics")["counters"]

    def generate(self, rate: int, seconds: float, interval: float) -> Generation:
        """One continuous-generation run at ``rate`` records/s; returns when its calls are done."""
        per_tick = max(1, round(rate * interval))
        body = {"interval_seconds": interval, "logs_per_interval": per_tick,
                "duration_seconds": seconds}  # fmt: skip
        orchestrator = self.run.url("scenario-orchestrator")
        self.http.post(orchestrator + "/api/continuous/start", json=body).raise_for_status()
        deadline = time.monotonic() + seconds + 300
        while True:
            time.sleep(0.1)  # often: the drain time is counted from when the end is seen
            stats = self.get("scenario-orchestrator", "/api/continuous/stats")
            if not stats["running"]:
                return Generation(per_tick / interval, stats, time.monotonic())
            if time.monotonic() > deadline:
                self.http.post(orchestrator + "/api/continuous/stop")
                raise RuntimeError(f"generation at {rate}/s still running after {seconds + 300}s")

    def wait_delivered(
        self, baseline: int, expected: int, cap: float, since: float | None = None
    ) -> float | None:
        """Seconds from ``since`` (monotonic; default now) until the consumer has written
        ``expected`` records more than ``baseline``; None when that takes over ``cap``."""
        began = time.monotonic() if since is None else since
        while time.monotonic() - began <= cap:
            if self.consumer_records_out() - baseline >= expected:
                return time.monotonic() - began
            time.sleep(0.1)
        return None


def healthy_after(cli_output: str) -> dict[str, float]:
    """``<service>: healthy after 3.2s`` lines of the fleet CLI, as {service: seconds}."""
    found = {}
    for line in cli_output.splitlines():
        name, _, rest = line.strip().partition(": healthy after ")
        if rest.endswith("s"):
            try:
                found[name] = float(rest[:-1])
            except ValueError:
                continue
    return found


# --- figures ------------------------------------------------------------------------------------
@dataclass
class StorageTally:
    """Stored bytes and records per kind, over every object read in one encoding."""

    stored_bytes: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)

    def add(self, delta: LakeDelta, gzip: bool) -> None:
        for kind, objects in delta.objects.items():
            for obj in objects:
                if is_gzip(obj.key) != gzip:
                    continue
                self.stored_bytes[kind] = self.stored_bytes.get(kind, 0) + obj.stored_bytes
                self.records[kind] = self.records.get(kind, 0) + len(obj.records)

    def per_record(self) -> dict[str, float]:
        return {
            kind: round(self.stored_bytes[kind] / self.records[kind], 1)
            for kind in sorted(self.records)
            if self.records[kind]
        }


def compare(accepted: dict[str, set[str]], lake: LakeDelta, kinds: list[str]) -> dict[str, Any]:
    """Accepted against stored, by event_id and kind: missing, duplicated, unexpected."""
    out: dict[str, Any] = {}
    for kind in kinds:
        stored = lake.ids(kind)
        want = accepted.get(kind, set())
        out[kind] = {
            "accepted": len(want),
            "in_s3": sum(stored.values()),
            "missing": len(want - set(stored)),
            "duplicated": sum(n - 1 for n in stored.values() if n > 1),
            "unexpected": len(set(stored) - want),
        }
    return out


def step_verdict(step: dict[str, Any], drain_bound: float) -> tuple[bool, str]:
    """Whether a step was sustained, and if not, the first reason why."""
    requested = step["requested_per_s"]
    if abs(step["achieved_per_s"] - requested) > RATE_TOLERANCE * requested:
        return False, f"generated {step['achieved_per_s']:,.0f}/s, not within 5 % of {requested:,}"
    if step["failed"] or step["skipped"]:
        return False, f"generator failed {step['failed']}, skipped {step['skipped']} records"
    if step["accepted"] != step["produced"]:
        return False, f"ingestion accepted {step['accepted']} of {step['produced']} produced"
    for kind, c in step["by_kind"].items():
        if c["missing"] or c["duplicated"] or c["unexpected"]:
            return False, (
                f"{kind}: {c['missing']} missing, {c['duplicated']} duplicated, "
                f"{c['unexpected']} unexpected in S3"
            )
    if step["drain_s"] is None or step["drain_s"] > drain_bound:
        took = "never" if step["drain_s"] is None else f"after {step['drain_s']:g} s"
        return False, f"all in S3 {took}, not within {drain_bound:g} s of the generation's end"
    return True, "sustained"


# --- phases -------------------------------------------------------------------------------------
@dataclass
class Bench:
    fleet: PipelineFleet
    sampler: FleetSampler
    ledger: AcceptedLedger
    lake: LakeWatcher
    kinds: list[str]
    plain: StorageTally = field(default_factory=StorageTally)
    gzip: StorageTally = field(default_factory=StorageTally)

    def step(self, rate: int, seconds: float, drain_bound: float) -> dict[str, Any]:
        self.sampler.phase = f"step {rate}/s"
        before = self.fleet.ingestion_counters()
        out_before = self.fleet.consumer_records_out()
        cpu = self.sampler.open_cpu_window()
        gen = self.fleet.generate(rate, seconds, STEP_INTERVAL)
        self.sampler.close_cpu_window(cpu)
        after = self.fleet.ingestion_counters()
        accepted = self.ledger.new_ids()
        total = sum(len(ids) for ids in accepted.values())
        drain = self.fleet.wait_delivered(
            out_before, total, drain_bound + DELIVERY_WAIT_CAP, since=gen.ended
        )
        lake = self.lake.read_new()
        self.plain.add(lake, gzip=False)
        speed = reference_loop_ms()  # the fleet is quiet now: every record is delivered
        stats = gen.stats
        step = {
            "requested_per_s": round(gen.requested_per_s),
            "achieved_per_s": round(gen.achieved_per_s, 1),
            "generation_s": round(gen.seconds, 2),
            "can_keep_up": stats["can_keep_up"],
            "produced": stats["records_produced"],
            "failed": stats["records_failed"],
            "skipped": stats["records_skipped"],
            "accepted": after["accepted"] - before["accepted"],
            "spooled": after["spooled"] - before["spooled"],
            "drain_s": None if drain is None else round(drain, 2),
            "end_to_end_per_s": (
                round(total / (gen.seconds + drain)) if drain is not None else None
            ),
            "by_kind": compare(accepted, lake, self.kinds),
            "cpu_percent": cpu.percent,
            "cpu_ms_per_1000_records": cpu.ms_per_1000(stats["records_produced"]),
            "cpu_bound_estimate_per_s": cpu_bound_estimate(cpu, stats["records_produced"]),
            "reference_loop_ms": speed,
        }
        step["sustained"], step["verdict"] = step_verdict(step, drain_bound)
        return step

    def latency(self, rate: int, seconds: float) -> dict[str, Any]:
        self.sampler.phase = f"latency {rate}/s"
        out_before = self.fleet.consumer_records_out()
        poller = LakePoller(self.lake)
        poller.start()
        try:
            gen = self.fleet.generate(rate, seconds, LATENCY_INTERVAL)
            accepted = self.ledger.new_ids()
            total = sum(len(ids) for ids in accepted.values())
            poller.wait_for(self.fleet, out_before, total, cap=60)
        finally:
            delta = poller.stop()
        self.plain.add(delta, gzip=False)
        latencies, missing = latencies_of(accepted, delta)
        mean_cycle, max_cycle = poller.cycle_stats()
        figures: dict[str, Any] = {
            "requested_per_s": round(gen.requested_per_s),
            "achieved_per_s": round(gen.achieved_per_s, 1),
            "records": total,
            "visible": len(latencies),
            "missing": missing,
            "listing_cycle_mean_s": round(mean_cycle, 3),
            "listing_cycle_max_s": round(max_cycle, 3),
            "timestamp_resolution_s": LATENCY_INTERVAL,
        }
        if latencies:
            figures |= {f"p{p}_s": round(percentile(latencies, p), 3) for p in (50, 95, 99)}
            figures["max_s"] = round(latencies[-1], 3)
        return figures

    def gzip_storage(
        self, rate: int, seconds: float, drain_cap: float, flush_age: float
    ) -> dict[str, float]:
        self.sampler.phase = f"gzip {rate}/s"
        # Older objects compress better (more lines share one gzip window).
        self.fleet.restart_consumer(COMPRESSION="gzip", FLUSH_MAX_AGE_SECONDS=str(flush_age))
        self.lake.read_new()  # whatever the old consumer flushed on its way out
        out_before = self.fleet.consumer_records_out()
        self.fleet.generate(rate, seconds, STEP_INTERVAL)
        accepted = self.ledger.new_ids()
        total = sum(len(ids) for ids in accepted.values())
        self.fleet.wait_delivered(out_before, total, drain_cap)
        self.gzip.add(self.lake.read_new(), gzip=True)
        return self.gzip.per_record()


class LakePoller:
    """Lists the lake back to back in a thread, so each new object gets a first-seen time;
    the objects are read afterwards, so a cycle is only the three listings."""

    def __init__(self, lake: LakeWatcher) -> None:
        self.lake = lake
        self.listed: list[Listed] = []
        self.cycles: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lake-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> LakeDelta:
        self._stop.set()
        self._thread.join(60)
        return self.lake.read(self.listed)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.listed.extend(self.lake.list_new())
            took = time.monotonic() - began
            self.cycles.append(took)
            # A short pause so the poller does not take a core from the pipeline it measures.
            self._stop.wait(max(0.0, POLL_EVERY - took))

    def cycle_stats(self) -> tuple[float, float]:
        """Mean and max time between two listings (the resolution of a first sighting)."""
        spans = [max(c, POLL_EVERY) for c in self.cycles] or [0.0]
        return sum(spans) / len(spans), max(spans)

    def wait_for(self, fleet: PipelineFleet, baseline: int, expected: int, cap: float) -> None:
        """Until the consumer has written the run's records, and one listing after that."""
        fleet.wait_delivered(baseline, expected, cap)
        cycles = len(self.cycles)
        deadline = time.monotonic() + 30
        while len(self.cycles) < cycles + 2 and time.monotonic() < deadline:
            time.sleep(0.05)


def latencies_of(accepted: dict[str, set[str]], delta: LakeDelta) -> tuple[list[float], int]:
    """Sorted seconds from each accepted record's timestamp to its first sighting in S3."""
    seen: dict[str, float] = {}
    for objects in delta.objects.values():
        for obj in objects:
            for event_id, timestamp in obj.records:
                if event_id not in seen:
                    seen[event_id] = obj.seen_at - epoch_seconds(timestamp)
    wanted = set().union(*accepted.values()) if accepted else set()
    latencies = sorted(seen[i] for i in wanted if i in seen)
    return latencies, len(wanted) - len(latencies)


def cpu_bound_estimate(cpu: CpuWindow, records: int) -> int | None:
    """The rate at which the fleet's CPU cost per record would fill every core of this machine
    (an upper bound: it assumes perfect parallelism and no waiting)."""
    total = sum(cpu.cpu_seconds.values())
    if total <= 0 or not records:
        return None
    return round((psutil.cpu_count() or 1) * records / total)


def highest_sustained(steps: list[dict[str, Any]]) -> int:
    return max((s["requested_per_s"] for s in steps if s["sustained"]), default=0)


def profile_hottest(
    bench: Bench, steps: list[dict[str, Any]], rate: int, seconds: float, count: int
) -> dict[str, Any]:
    """py-spy on the ``count`` processes that used the most CPU in the last step."""
    usage = steps[-1]["cpu_percent"] if steps else {}
    hottest = sorted(usage, key=usage.get, reverse=True)[:count]
    pids = {name: bench.fleet.run.pid(name) for name in hottest}
    bench.sampler.phase = f"profile {rate}/s"
    out_dir = RESULTS_DIR / f"profile-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out_dir.mkdir(parents=True)
    cpu = bench.sampler.open_cpu_window()
    # The recordings start as the run starts and end before it does, so they see a steady rate.
    recorders = {
        name: start_recording(pid, seconds - 2, out_dir / f"{name}.txt")
        for name, pid in pids.items()
    }
    out_before = bench.fleet.consumer_records_out()
    bench.fleet.generate(rate, seconds, STEP_INTERVAL)
    bench.sampler.close_cpu_window(cpu)
    # Not checked by event_id, but drained, so that the next phase starts from an idle pipeline.
    accepted = bench.ledger.new_ids()
    bench.fleet.wait_delivered(out_before, sum(map(len, accepted.values())), DELIVERY_WAIT_CAP)
    summaries = {}
    for name, proc in recorders.items():
        proc.wait(60)
        path = out_dir / f"{name}.txt"
        if path.exists():
            summary = summarize(path.read_text())
            summaries[name] = {
                "samples": summary.samples,
                "top_self": [vars(s) for s in summary.self_time],
                "top_inclusive_own_code": [vars(s) for s in summary.inclusive],
            }
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "cpu_percent": cpu.percent,
        "directory": str(out_dir.relative_to(ROOT)),
        "processes": summaries,
    }


# --- report -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    key: str
    figure: str
    value: float | None  # None: not measured in this run (its phase was skipped)
    target: str
    met: bool | None


def verdicts(result: dict[str, Any]) -> list[Verdict]:
    latency = result.get("latency") or {}
    storage = result["stored_bytes_per_record"]
    values: list[tuple[str, str, float | None]] = [
        ("sustained_rate", "", result.get("highest_sustained_per_s")),
        ("latency_p50", "", latency.get("p50_s")),
        ("latency_p99", "", latency.get("p99_s")),
        ("total_rss", "", result["peak_rss_mb"]["total"]),
    ]
    gzip_age = result["options"]["gzip_flush_age"]
    for encoding, objects in (("plain", ""), ("gzip", f" ({gzip_age:g} s objects)")):
        for kind, bucket in result["buckets"].items():
            where = f"{bucket}{objects}"
            values.append((f"bytes_{encoding}", where, storage[encoding].get(kind)))
    values.append(("start_seconds", "", result["start_to_healthy_s"]))
    out = []
    for key, where, value in values:
        target = TARGETS[key]
        figure = f"{target.figure}, {where}" if where else target.figure
        met = None if value is None else target.met(value)
        out.append(Verdict(key, figure, value, target.text, met))
    return out


def print_report(result: dict[str, Any], path: Path) -> None:
    steps = result.get("steps", [])
    if steps:
        print(f"\n{'requested/s':>11} {'achieved/s':>10} {'accepted':>9} {'in S3':>9} "
              f"{'missing':>7} {'dup':>4} {'drain s':>7} {'e2e/s':>7}  verdict")  # fmt: skip
        for s in steps:
            in_s3 = sum(c["in_s3"] for c in s["by_kind"].values())
            missing = sum(c["missing"] for c in s["by_kind"].values())
            dup = sum(c["duplicated"] for c in s["by_kind"].values())
            print(
                f"{s['requested_per_s']:>11,} {s['achieved_per_s']:>10,.0f} {s['accepted']:>9,} "
                f"{in_s3:>9,} {missing:>7} {dup:>4} {s['drain_s']!s:>7} "
                f"{s['end_to_end_per_s']!s:>7}  {s['verdict']}"
            )
        last = steps[-1]
        print(f"last step, CPU % of one core: {last['cpu_percent']}")
        print(f"last step, CPU ms per 1,000 records: {last['cpu_ms_per_1000_records']}; "
              f"all cores busy at that cost: {last['cpu_bound_estimate_per_s']}/s")  # fmt: skip
        loops = [s.get("reference_loop_ms") for s in steps]
        print(f"machine speed: a fixed Python loop took {result.get('reference_loop_ms_at_start')} "
              f"ms at the start, {loops} ms after each step (the same code's CPU per record "
              "moves with it on a shared host)")  # fmt: skip
    print(f"\n{'figure':58} {'measured':>10}  {'target':>10}  result")
    for v in verdicts(result):
        shown = "-" if v.value is None else f"{v.value:,g}"
        met = {True: "pass", False: "MISS", None: "not measured"}[v.met]
        print(f"{v.figure:58} {shown:>10}  {v.target:>10}  {met}")
    latency = result.get("latency")
    if latency:
        print(f"  latency p95 {latency.get('p95_s')} s, max {latency.get('max_s')} s; "
              f"resolution: listing cycle {latency['listing_cycle_mean_s']} s mean "
              f"(max {latency['listing_cycle_max_s']} s) + {LATENCY_INTERVAL} s tick")  # fmt: skip
    storage = result["stored_bytes_per_record"]
    print(f"  bytes/record per kind: plain {storage['plain']}, gzip {storage['gzip']}")
    print(f"  peak RSS (MB): {result['peak_rss_mb']}")
    print(f"  healthy after (s, from the start of its dependency level): "
          f"{result['healthy_after_s']}")  # fmt: skip
    print(f"  peak total RSS by phase (MB): {result['peak_total_rss_mb_by_phase']}")
    print(f"  peak total PSS (MB, shared pages counted once): {result['peak_total_pss_mb']}")
    print_profile(result.get("profile"))
    print(f"\nmachine: {result['machine']}")
    print(f"JSON: {path.relative_to(ROOT)}")
    print(f"rerun: .venv/bin/{result['rerun']}")


def print_profile(profile: dict[str, Any] | None) -> None:
    if not profile:
        return
    print(f"\nprofile at {profile['rate_per_s']:,}/s (py-spy, GIL-holding samples), "
          f"CPU %: {profile['cpu_percent']}")  # fmt: skip
    for name, summary in profile["processes"].items():
        print(f"  {name} ({summary['samples']} samples), top functions by own time:")
        for share in summary["top_self"]:
            print(f"    {share['percent']:5.1f} %  {share['function']}")
    print(f"  collapsed stacks: {profile['directory']}/")


# --- command line -------------------------------------------------------------------------------
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

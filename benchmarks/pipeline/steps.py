"""The benchmark's phases (latency, rate steps, gzip storage, profile) and the figures each
one yields: what was accepted against what is in S3, per-record storage, CPU cost."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil

from benchmarks.common import RESULTS_DIR, CpuWindow, FleetSampler, percentile, reference_loop_ms
from benchmarks.lake import AcceptedLedger, LakeDelta, LakeWatcher, Listed, epoch_seconds
from benchmarks.pipeline.fleet import PipelineFleet
from benchmarks.profiling import start_recording, summarize
from stages.common.lake import is_gzip
from tests.support.processes import ROOT

STEP_INTERVAL = 0.25  # seconds between generator ticks during the steps
LATENCY_INTERVAL = 0.1  # shorter ticks: a record's timestamp is at most this after its making
POLL_EVERY = 0.1  # seconds from one lake listing to the next, at the least
RATE_TOLERANCE = 0.05
# A lake kept gzipped is written for storage, not latency: objects of 10 s hold ~10 times the
# records of the consumer's default 1 s ones, and gzip needs lines to compress against.
GZIP_FLUSH_AGE = 10.0
DELIVERY_WAIT_CAP = 120.0  # how long a step waits for stragglers after its drain bound, to report


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

"""The benchmark's targets, and the report it prints of a run's result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.pipeline.steps import LATENCY_INTERVAL
from tests.support.processes import ROOT


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

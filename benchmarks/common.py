"""What the benchmarks share: the machine they ran on, where results go, process sampling."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from stages.ops import registry
from tests.support.processes import ROOT

RESULTS_DIR = ROOT / "benchmarks" / "results"


def machine_info() -> dict[str, Any]:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the host skews every figure; the load average says how much there was.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


REFERENCE_LOOP_ITERATIONS = 3_000_000


def reference_loop_ms(repeats: int = 3) -> float:
    """CPU milliseconds of a fixed pure-Python loop, the best of ``repeats``.

    On a VM that shares its host the same code costs up to twice the CPU from one hour to the
    next (noisy neighbours show as slower cycles, not only as steal time); every CPU figure of a
    run is to be read against this one, taken when the fleet is quiet.
    """
    best = math.inf
    for _ in range(repeats):
        began = time.process_time()
        total = 0
        for i in range(REFERENCE_LOOP_ITERATIONS):
            total += i
        best = min(best, time.process_time() - began)
    return round(best * 1000, 1)


def write_result(prefix: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{prefix}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (the value p % of the samples are at)."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def pids_in(run_dir: Path) -> dict[str, int]:
    """The fleet's processes by service name, from the pid files the fleet CLI writes."""
    pids = {}
    for path in run_dir.glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pids[path.stem] = int(path.read_text())
    return pids


def _tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and its children (a service that forks is charged for its workers)."""
    return _tree_sum(proc, lambda p: p.memory_info().rss)


def _tree_pss(proc: psutil.Process) -> int:
    """Proportional set size of a process and its children: pages shared with other processes
    (the interpreter, libssl, pydantic-core...) are divided among them instead of counted whole."""
    return _tree_sum(proc, lambda p: p.memory_full_info().pss)


def _tree_sum(proc: psutil.Process, measure: Callable[[psutil.Process], int]) -> int:
    total = measure(proc)
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += measure(child)
    return total


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class CpuWindow:
    """CPU seconds each service used between ``open`` and ``close``."""

    started: float
    at_start: dict[str, float]
    wall_seconds: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def percent(self) -> dict[str, float]:
        """Each service's CPU as % of one core over the window."""
        wall = max(1e-6, self.wall_seconds)
        return {name: round(100 * cpu / wall, 1) for name, cpu in self.cpu_seconds.items()}

    def ms_per_1000(self, records: int) -> dict[str, float]:
        """CPU milliseconds each service spent per 1,000 records: a cost that, unlike a rate,
        does not depend much on what else the machine is doing."""
        return {
            name: round(1e6 * cpu / max(1, records), 1) for name, cpu in self.cpu_seconds.items()
        }


class FleetSampler:
    """Samples the RSS of every process in a RUN_DIR several times a second, in a thread.

    Keeps each service's peak and the peak of their sum (taken at the same instant, so it is
    what the machine really had to hold at once, not the sum of peaks at different moments).
    """

    def __init__(self, run_dir: Path, every: float = 0.25) -> None:
        self.run_dir = run_dir
        self.every = every
        self.peak_mb: dict[str, float] = {}
        self.peak_total_mb = 0.0
        # Peak of the total per phase: the emulator keeps every record in memory, so the total
        # grows with what a run has sent so far, not only with the rate.
        self.phase = "start"
        self.phase_peak_total_mb: dict[str, float] = {}
        # The same without the emulator: it stands in for AWS, which costs no local memory.
        self.peak_without_emulator_mb = 0.0
        # RSS counts a shared library's pages in every process that maps it, so the sum of nine
        # RSS overstates what the machine holds; the sum of PSS does not (Linux only).
        self.peak_total_pss_mb = 0.0
        self.samples = 0
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> FleetSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _process(self, pid: int) -> psutil.Process:
        if pid not in self._procs:
            self._procs[pid] = psutil.Process(pid)
        return self._procs[pid]

    def sample(self) -> dict[str, float]:
        now: dict[str, float] = {}
        pss = 0.0
        for name, pid in pids_in(self.run_dir).items():
            with contextlib.suppress(psutil.Error):
                now[name] = _tree_rss(self._process(pid)) / 2**20
            with contextlib.suppress(psutil.Error, AttributeError):
                pss += _tree_pss(self._process(pid)) / 2**20
        self.peak_total_pss_mb = max(self.peak_total_pss_mb, pss)
        for name, mb in now.items():
            self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), mb)
        total = sum(now.values())
        self.peak_total_mb = max(self.peak_total_mb, total)
        without = total - now.get(registry.EMULATOR, 0.0)
        self.peak_without_emulator_mb = max(self.peak_without_emulator_mb, without)
        phase = self.phase
        self.phase_peak_total_mb[phase] = max(self.phase_peak_total_mb.get(phase, 0.0), total)
        self.samples += 1
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.every - (time.monotonic() - began)))

    def cpu_seconds(self) -> dict[str, float]:
        out = {}
        for name, pid in pids_in(self.run_dir).items():
            with contextlib.suppress(psutil.Error):
                out[name] = _cpu_seconds(self._process(pid))
        return out

    def open_cpu_window(self) -> CpuWindow:
        return CpuWindow(time.monotonic(), self.cpu_seconds())

    def close_cpu_window(self, window: CpuWindow) -> CpuWindow:
        window.wall_seconds = time.monotonic() - window.started
        end = self.cpu_seconds()
        window.cpu_seconds = {
            name: end[name] - window.at_start[name]
            for name in sorted(end)
            if name in window.at_start
        }
        return window

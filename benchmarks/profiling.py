"""Sampling profiles of running fleet processes with py-spy, and their top functions.

py-spy's ``raw`` format is one line per distinct stack, ``frame;frame;...;leaf count``, with
frames written as ``function (file:line)``; ``--function`` makes frames of one function one frame.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SAMPLES_PER_SECOND = 50  # low enough that py-spy does not take a share of the two cores itself


def py_spy() -> str:
    beside_python = Path(sys.executable).with_name("py-spy")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("py-spy")
    if found is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    return found


def start_recording(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy record for ``seconds`` into ``out`` (collapsed stacks); the process is not paused.

    Only threads holding the GIL are sampled (``--gil``): a thread waiting on a lock, a socket
    or the event loop's selector costs no CPU, and would otherwise top every list.
    """
    args = [
        py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", str(SAMPLES_PER_SECOND), "--format", "raw", "--function", "--nonblocking",
        "--gil", "--output", str(out),
    ]  # fmt: skip
    log = out.with_suffix(".log").open("wb")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@dataclass
class FunctionShare:
    function: str
    samples: int
    percent: float


@dataclass
class ProfileSummary:
    samples: int
    self_time: list[FunctionShare]  # where the samples' innermost frame was
    # Stacks one of the project's own functions was anywhere in (library and event-loop frames
    # are under nearly every sample, so they would crowd this list out).
    inclusive: list[FunctionShare]


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(text: str, top: int = 10, own_code: str = "stages/") -> ProfileSummary:
    stacks = parse_collapsed(text)
    total = sum(count for _, count in stacks)
    leaf: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for frames, count in stacks:
        leaf[frames[-1]] += count
        for frame in set(frames):
            if own_code in frame:
                anywhere[frame] += count

    def shares(counter: Counter[str]) -> list[FunctionShare]:
        return [
            FunctionShare(name, n, round(100 * n / total, 1) if total else 0.0)
            for name, n in counter.most_common(top)
        ]

    return ProfileSummary(total, shares(leaf), shares(anywhere))

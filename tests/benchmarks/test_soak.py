"""The soak benchmark end to end, with a tiny rate and duration: the whole fleet starts on
private ports, samples are taken, and the verdict and the record counts come out of the
command as its documentation says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import growth
from tests.ops.support import clean_env
from tests.support.processes import ROOT


def test_growth_is_measured_from_the_baseline_sample_to_the_last() -> None:
    samples = [
        {"t": 0.0, "processes": {"a": {"rss_mb": 50.0}, "b": {"rss_mb": 10.0}}},
        {"t": 60.0, "processes": {"a": {"rss_mb": 100.0}, "b": {"rss_mb": 100.0}}},
        {"t": 120.0, "processes": {"a": {"rss_mb": 109.0}, "b": {"rss_mb": 111.0}}},
    ]
    verdict = growth(samples, baseline=60, limit=10)
    assert verdict["baseline_t"] == 60.0
    assert verdict["processes"]["a"]["growth_percent"] == 9.0
    assert verdict["processes"]["a"]["passed"] is True
    assert verdict["processes"]["b"]["growth_percent"] == 11.0
    assert verdict["processes"]["b"]["passed"] is False


@pytest.mark.timeout(240)
def test_the_soak_command_runs_the_fleet_and_reports(tmp_path: Path) -> None:
    options = [
        "--rate",
        "50",
        "--duration",
        "8",
        "--sample-every",
        "2",
        "--baseline",
        "3",
        "--drain-seconds",
        "30",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", *options, "--root", str(tmp_path / "fleet")],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout
    written = result.stdout.rsplit("written to ", 1)[1].strip()
    report = json.loads(Path(written).read_text())
    Path(written).unlink()
    records = report["records"]
    # 50/s for 8 s, in whole ticks of 12 records.
    assert 400 <= records["offered"] <= 420
    assert records["offered"] == records["accepted"] == records["landed"]
    assert len(report["samples"]) >= 4
    processes = report["memory"]["processes"]
    assert {"emulator", "kinesis-consumer", "ingestion-interface", "dashboard"} <= set(processes)
    assert all(p["rss_mb_at_end"] > 10 for p in processes.values())

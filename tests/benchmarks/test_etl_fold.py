"""The fold benchmark end to end on a small hour: raw objects on a private emulator, one
fold_once() of the service's ETL, the startup against a checkpoint, and the figures its
documentation names."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.ops.support import clean_env
from tests.support.processes import ROOT


@pytest.mark.timeout(300)
def test_the_fold_benchmark_reports_cpu_per_record_and_the_startup() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.etl_fold",
            "--quick",
            "--startup-rows",
            "9000",
            "--refolds",
            "1",
            "--reclaim",
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "input: 3,000 records in one hour" in out
    assert "plain objects of up to 35 records" in out
    assert (
        "landed: logs 2,100 rows of 2,100 sent, metrics 600 rows of 600 sent, "
        "apm 300 rows of 300 sent; exactly once: yes"
    ) in out
    fold = re.search(
        r"^fold 1: 3,000 records in ([\d,]+) objects; ETL process [\d.]+ s CPU = ([\d,]+) "
        r"records/s per core \([\d.]+ us per record, of which the features step [\d.]+\); "
        r"emulator [\d.]+ s CPU .* together [\d,]+ records/s per core; wall [\d.]+ s = "
        r"[\d,]+ records/s, [\d,]+ objects/s$",
        out,
        re.MULTILINE,
    )
    assert fold, out
    objects = int(fold[1].replace(",", ""))
    assert objects > 3000 // 35 and int(fold[2].replace(",", "")) > 0
    alone = re.search(
        r"^  without the features step: [\d.]+ s CPU = ([\d,]+) records/s per core "
        r"\([\d.]+ us per record\); steps \(us per record\): listing [\d.]+, ",
        out,
        re.MULTILINE,
    )
    assert alone and int(alone[1].replace(",", "")) >= int(fold[2].replace(",", "")), out
    for step in ("listing", "GETs \\+ typing", "typing", "commits", "Parquet files"):
        assert re.search(rf"^  {step}.*: [\d.]+ s CPU", out, re.MULTILINE), (step, out)
    # 3,000 folded rows copied under new keys until the tables hold at least 9,000.
    startup = re.search(
        r"startup, tables of ([\d,]+) rows holding ([\d,]+) source keys: scanning .* "
        r"load_held from the checkpoint",
        out,
    )
    assert startup, out
    assert int(startup[1].replace(",", "")) >= 9000
    assert int(startup[2].replace(",", "")) >= 3 * objects
    # One refold into fresh tables after a round of the service's memory reclaim; its rows
    # are checked exactly once like the first fold's.
    assert re.search(
        r"^refold, best of 1 \(fresh tables, a new ETL each\): 3,000 records in "
        rf"{objects:,} objects; ETL process",
        out,
        re.MULTILINE,
    ), out
    assert re.search(
        r"^  refolds without the features step, records/s per core: [\d,]+$", out, re.MULTILINE
    ), out
    assert (
        "rerun: python -m benchmarks.etl_fold --records 3000 --object-records 35 --folds 1 "
        "--refolds 1 --reclaim"
    ) in out

"""The Parquet layout benchmark on a small hour: both layouts of every table, per column, and
compaction's layout smaller than pyiceberg's writer settings on the same rows."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.ops.support import clean_env
from tests.support.processes import ROOT


@pytest.mark.timeout(180)
def test_the_layout_benchmark_reports_bytes_per_record_per_layout_and_column() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.etl_layout", "--quick"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "input: 20,000 records in one hour" in out
    rows = {
        (m["table"], m["layout"]): m
        for m in re.finditer(
            r"^(?P<table>logs|metrics|apm)\s+(?P<layout>pyiceberg|compaction)\s+"
            r"(?P<records>[\d,]+) records\s+(?P<bytes>[\d.]+) B/record\s+(?P<files>\d+) files",
            out,
            re.MULTILINE,
        )
    }
    assert len(rows) == 6, out
    for table in ("logs", "metrics", "apm"):
        ours, theirs = rows[(table, "compaction")], rows[(table, "pyiceberg")]
        assert ours["records"] == theirs["records"]
        assert 0 < float(ours["bytes"]) < float(theirs["bytes"]), (table, out)
    assert (
        sum(
            int(rows[(t, "compaction")]["records"].replace(",", ""))
            for t in ("logs", "metrics", "apm")
        )
        == 20_000
    )
    # The per-column line names the id and the lineage columns.
    assert re.search(r"^\s+event_id [\d.]+, .*source_key [\d.]+", out, re.MULTILINE), out
    assert "rerun: python -m benchmarks.etl_layout --records 20000 --object-seconds 1" in out

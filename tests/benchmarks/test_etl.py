"""The ETL benchmark end to end on a small hour: it generates raw objects, types them, commits
them to a real emulator's Iceberg tables and prints the figures its documentation names."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.ops.support import clean_env
from tests.support.processes import ROOT


@pytest.mark.timeout(240)
def test_the_etl_benchmark_reports_throughput_and_bytes_per_record() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.etl", "--quick", "--object-records", "40"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "input: 3,000 records in one hour" in out
    assert "gzip objects of up to 40 records" in out
    rate = r"= ([\d,]+) records/s per core"
    typing = re.search(r"\(a\) inflate \+ typing: [\d.]+ s CPU " + rate, out)
    committed = re.search(r"\(b\) inflate \+ typing \+ Iceberg append \(3 commits.*" + rate, out)
    assert typing and committed, out
    assert int(typing[1].replace(",", "")) > 0 and int(committed[1].replace(",", "")) > 0
    compaction = re.search(
        r"\(d\) compaction of the closed hour \((\d+) partitions rewritten\)", out
    )
    assert compaction, out
    # Every table's row: all 3,000 records land, raw JSONL is larger than its gzip, and after
    # compaction the Parquet files hold every record of the hour in one file per partition.
    rows = {
        m["table"]: m
        for m in re.finditer(
            r"^(?P<table>logs|metrics|apm)\s+(?P<records>[\d,]+)\s+(?P<raw>[\d.]+)\s+"
            r"(?P<gzip>[\d.]+)\s+(?P<appended>[\d.]+)\s+(?P<parquet>[\d.]+)\s+(?P<files>\d+)\s+"
            r"(?P<kib>[\d.]+)$",
            out,
            re.MULTILINE,
        )
    }
    assert set(rows) == {"logs", "metrics", "apm"}, out
    assert sum(int(m["records"].replace(",", "")) for m in rows.values()) == 3000
    for m in rows.values():
        assert float(m["raw"]) > float(m["gzip"]) > 0
        assert float(m["appended"]) > 0 and float(m["parquet"]) > 0 and int(m["files"]) >= 1
    # (b) wrote one file per partition; compaction rewrote each as one file.
    assert sum(int(m["files"]) for m in rows.values()) == int(compaction[1]), out
    assert "rerun: python -m benchmarks.etl --records 3000 --repeat 1 --object-records 40" in out
    assert "--arrow-threads 1" in out

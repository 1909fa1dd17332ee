"""The freshness benchmark: its options, and a --quick run end to end (emulator, consumer, ETL
service) in which every record sent must become visible in the curated tables once."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import orjson
import pyarrow as pa
import pytest

from benchmarks import freshness
from benchmarks.freshness import TARGET_P50_S, TARGET_P99_S, Visibility, parse_args, stats
from tests.ops.support import clean_env
from tests.support.processes import ROOT


def test_options() -> None:
    args = parse_args(["--rate", "1000,10000", "--duration", "30", "--env", "ETL_X=1"])
    assert args.rates == [1000, 10000] and args.duration == 30 and args.env == {"ETL_X": "1"}
    quick = parse_args(["--quick"])
    assert quick.rates == [200] and quick.duration == 15
    for bad in (["--rate", "0"], ["--rate", "x"], ["--env", "NOEQUALS"], ["--duration", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_visibility_keeps_the_first_commit_and_counts_repeats() -> None:
    seen = Visibility(total=4, run="ab12cd34")

    def rows(ids: list[str], stamp_ms: int) -> pa.Table:
        return pa.table(
            {
                "event_id": ids,
                "timestamp": pa.array([stamp_ms] * len(ids), pa.timestamp("ms", tz="UTC")),
                "source_key": ["k1"] * len(ids),
            }
        )

    seen.add(rows(["ab12cd34-0000000000", "ab12cd34-0000000002", "other-1"], 1000), 5000)
    seen.add(rows(["ab12cd34-0000000002", "ab12cd34-0000000003"], 2000), 9000)
    assert seen.visible == 3 and seen.duplicates == 1 and seen.foreign_rows == 1
    assert seen.commit_ms.tolist() == [5000, 0, 5000, 9000]
    latency = (seen.commit_ms - seen.event_ms)[seen.commit_ms != 0] / 1000
    assert latency.tolist() == [4.0, 4.0, 7.0]
    assert stats(np.array([1.0, 2.0, 3.0, 4.0])) == {
        "p50_s": 2.0,
        "p90_s": 4.0,
        "p99_s": 4.0,
        "max_s": 4.0,
    }


@pytest.mark.timeout(420)
def test_a_quick_run_sees_every_record_in_the_tables() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.freshness", "--quick"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = result.stdout + result.stderr
    row = re.search(
        r"^\s+200\s+(?P<sent>\d+)\s+(?P<visible>\d+)\s+(?P<missing>\d+)\s+(?P<dup>\d+)\s+"
        r"(?P<p50>[\d.]+)\s+(?P<p90>[\d.]+)\s+(?P<p99>[\d.]+)\s+(?P<max>[\d.]+)\s+"
        r"(?P<verdict>pass|MISS)$",
        out,
        re.MULTILINE,
    )
    assert row, out
    assert int(row["sent"]) == 3000 == int(row["visible"]), out
    assert int(row["missing"]) == 0 and int(row["dup"]) == 0, out
    p50, p90, p99, top = (float(row[k]) for k in ("p50", "p90", "p99", "max"))
    assert 0 < p50 <= p90 <= p99 <= top, out
    met = p50 <= TARGET_P50_S and p99 <= TARGET_P99_S
    assert row["verdict"] == ("pass" if met else "MISS"), out
    assert result.returncode == (0 if met else 1), out

    path = re.search(r"^JSON: (\S+)$", out, re.MULTILINE)
    assert path, out
    saved = json.loads((ROOT / path[1]).read_text())
    (rate,) = saved["rates"]
    assert rate["sent"] == rate["visible"] == 3000 and rate["missing"] == 0
    assert rate["latency"]["p50_s"] == p50
    # Each part of the path is shorter than the whole; Kinesis acknowledges before the
    # consumer can have read a record.
    assert 0 < rate["to_kinesis_ack"]["p50_s"] <= rate["to_raw_zone"]["p50_s"] + 1.0
    assert rate["to_raw_zone"]["p50_s"] < p50
    # The raw object's LastModified has whole seconds, so the ETL's share can read up to 1 s
    # long and the consumer's up to 1 s short.
    assert 0 < rate["raw_zone_to_table"]["p50_s"] < p50 + 1.0
    assert set(rate["append_snapshots"]) == {"logs", "metrics", "apm"}
    assert {"emulator", "consumer", "etl"} <= set(rate["cpu_percent_while_sending"])
    assert rate["processes_alive_at_end"] == {"etl": True, "consumer": True}
    assert "rerun: .venv/bin/python -m benchmarks.freshness --quick" in out


def test_an_encoded_template_gives_the_producers_own_bytes() -> None:
    record = {"event_id": "x", "kind": "log", "service": "api-gateway", "timestamp": "t",
              "message": "caf\u00e9 \"quoted\"", "attributes": {"n": 1}}  # fmt: skip
    kind, service, head, middle, tail = freshness.encode_template(record)
    made = head + b"run-0000000007" + middle + b"2026-12-04T22:00:00.123Z" + tail
    expected = {**record, "event_id": "run-0000000007", "timestamp": "2026-12-04T22:00:00.123Z"}
    assert (kind, service) == ("log", "api-gateway")
    assert made == orjson.dumps(expected)

"""The pipeline benchmark's bookkeeping: options, step verdicts, ledgers, percentiles, profiles.

The benchmark itself runs the whole fleet for minutes; these check the parts that decide what
it reports, on small inputs whose right answer is known.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from benchmarks.common import CpuWindow, percentile
from benchmarks.lake import AcceptedLedger, LakeDelta, LakeObject, LakeWatcher
from benchmarks.pipeline import (
    compare,
    cpu_bound_estimate,
    healthy_after,
    latencies_of,
    parse_args,
    print_report,
    step_verdict,
    verdicts,
)
from benchmarks.profiling import summarize
from stages.common import aws
from stages.common.config import Settings
from tests.support.processes import ROOT


def test_quick_defaults_and_explicit_steps() -> None:
    quick = parse_args(["--quick"])
    assert quick.steps == [1000, 5000]
    assert quick.step_seconds == 5.0
    full = parse_args(["--steps", "8000,10000", "--step-seconds", "30", "--skip-latency"])
    assert full.steps == [8000, 10000]
    assert full.step_seconds == 30.0
    assert full.skip_latency and not full.skip_gzip
    # gzip is measured as a lake kept for storage runs it, unless asked otherwise.
    assert full.gzip_flush_age == 10.0 and full.gzip_seconds == 30.0
    assert parse_args(["--gzip-flush-age", "1"]).gzip_flush_age == 1.0


@pytest.mark.parametrize(
    "argv",
    [
        ["--steps", "fast"],
        ["--steps", "0,1000"],
        ["--step-seconds", "0"],
        ["--gzip-flush-age", "0"],
        ["--profile", "--skip-steps"],
    ],
)
def test_bad_options_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def a_step(**changes: Any) -> dict[str, Any]:
    step = {
        "requested_per_s": 10_000,
        "achieved_per_s": 9_600.0,
        "failed": 0,
        "skipped": 0,
        "produced": 200_000,
        "accepted": 200_000,
        "drain_s": 3.0,
        "by_kind": {"log": {"missing": 0, "duplicated": 0, "unexpected": 0}},
    }
    return step | changes


def test_a_step_is_sustained_only_when_fast_enough_complete_and_drained() -> None:
    assert step_verdict(a_step(), drain_bound=5) == (True, "sustained")
    slow, why = step_verdict(a_step(achieved_per_s=9_400.0), drain_bound=5)
    assert not slow and "9,400" in why
    lost = {"log": {"missing": 1, "duplicated": 0, "unexpected": 0}}
    assert step_verdict(a_step(by_kind=lost), drain_bound=5) == (
        False,
        "log: 1 missing, 0 duplicated, 0 unexpected in S3",
    )
    assert not step_verdict(a_step(accepted=199_999), drain_bound=5)[0]
    assert not step_verdict(a_step(drain_s=5.5), drain_bound=5)[0]
    assert not step_verdict(a_step(drain_s=None), drain_bound=5)[0]


def lake_of(kind: str, *objects: list[tuple[str, str]], seen_at: float = 0.0) -> LakeDelta:
    return LakeDelta(
        {kind: [LakeObject("b", f"k{i}", 10, seen_at, list(o)) for i, o in enumerate(objects)]}
    )


def test_compare_counts_missing_duplicated_and_unexpected_ids() -> None:
    ts = "2026-11-28T01:00:00.000Z"
    lake = lake_of("log", [("a", ts), ("b", ts)], [("b", ts), ("z", ts)])
    result = compare({"log": {"a", "b", "c"}}, lake, ["log", "apm"])
    assert result["log"] == {
        "accepted": 3, "in_s3": 4, "missing": 1, "duplicated": 1, "unexpected": 1,
    }  # fmt: skip
    assert result["apm"] == {
        "accepted": 0, "in_s3": 0, "missing": 0, "duplicated": 0, "unexpected": 0,
    }  # fmt: skip


def test_latency_is_first_sighting_minus_timestamp() -> None:
    made = "2026-11-28T01:00:00.000Z"  # 1795827600.0
    early = lake_of("log", [("a", made), ("b", made)], seen_at=1795827601.5)
    late = lake_of("log", [("a", made)], seen_at=1795827609.0)  # a rewrite, seen later
    early.extend(late)
    latencies, missing = latencies_of({"log": {"a", "b", "c"}}, early)
    assert latencies == [1.5, 1.5]
    assert missing == 1


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ledger_reads_each_whole_line_once_and_skips_anomaly_copies(tmp_path: Path) -> None:
    (tmp_path / "application").mkdir()
    (tmp_path / "anomaly").mkdir()
    log = tmp_path / "application" / "api_gateway_log.jsonl"
    line = orjson.dumps({"event_id": "e1", "kind": "log"}) + b"\n"
    log.write_bytes(line + b'{"event_id": "e2", "ki')  # e2 is being appended
    (tmp_path / "anomaly" / "api_gateway_log.jsonl").write_bytes(line)
    ledger = AcceptedLedger(tmp_path)
    assert ledger.new_ids() == {"log": {"e1"}}
    with open(log, "ab") as handle:
        handle.write(b'nd": "log"}\n')
    assert ledger.new_ids() == {"log": {"e2"}}
    assert ledger.new_ids() == {}


def test_summary_ranks_own_time_and_own_code() -> None:
    collapsed = "\n".join(
        [
            "main (stages/x/app.py:1);parse (json.py:3) 60",
            "main (stages/x/app.py:1);work (stages/x/domain.py:9) 30",
            "main (stages/x/app.py:1) 10",
        ]
    )
    summary = summarize(collapsed, top=2)
    assert summary.samples == 100
    assert [(s.function, s.percent) for s in summary.self_time] == [
        ("parse (json.py:3)", 60.0),
        ("work (stages/x/domain.py:9)", 30.0),
    ]
    assert [(s.function, s.percent) for s in summary.inclusive] == [
        ("main (stages/x/app.py:1)", 100.0),
        ("work (stages/x/domain.py:9)", 30.0),
    ]


def test_targets_of_skipped_phases_are_not_measured_and_misses_are_reported() -> None:
    result = {
        "highest_sustained_per_s": 6000,
        "peak_rss_mb": {"total": 650.0},
        "buckets": {"log": "md-raw-logs"},
        "stored_bytes_per_record": {"plain": {"log": 569.0}, "gzip": {}},
        "start_to_healthy_s": 9.5,
        "options": {"gzip_flush_age": 10.0},
    }
    by_figure = {v.figure: v.met for v in verdicts(result)}
    assert by_figure["highest sustained end-to-end rate (records/s)"] is False
    assert by_figure["latency p50 at 1,000/s (s)"] is None
    assert by_figure["peak RSS, all processes (MB)"] is True
    assert by_figure["stored bytes/record plain, md-raw-logs"] is False
    assert by_figure["stored bytes/record gzip, md-raw-logs (10 s objects)"] is None
    assert by_figure["start to all healthy (s)"] is True


def test_lake_watcher_reads_new_objects_once_and_sets_dead_letters_apart(endpoint: str) -> None:
    s3 = aws.client("s3", Settings(aws_endpoint_url=endpoint))
    ts = "2026-11-28T01:00:00.000Z"
    lines = [orjson.dumps({"event_id": f"e{i}", "timestamp": ts}) + b"\n" for i in range(3)]
    s3.put_object(Bucket="md-raw-logs", Key="service=a/part-1.jsonl", Body=b"".join(lines[:2]))
    s3.put_object(
        Bucket="md-raw-logs", Key="service=a/part-2.jsonl.gz", Body=gzip.compress(lines[2])
    )
    s3.put_object(Bucket="md-raw-logs", Key="_dead-letter/x.jsonl", Body=b"{}\n")
    watcher = LakeWatcher(s3, {"log": "md-raw-logs", "apm": "md-raw-apm"})
    first = watcher.read_new()
    assert first.ids("log") == Counter({"e0": 1, "e1": 1, "e2": 1})
    assert first.stored_bytes("log") == len(lines[0]) + len(lines[1]) + len(gzip.compress(lines[2]))
    assert first.record_count("apm") == 0
    assert watcher.dead_letter_objects == 1
    assert watcher.read_new().record_count("log") == 0


def test_cpu_cost_per_record_and_the_rate_it_allows_on_this_machine() -> None:
    window = CpuWindow(started=0.0, at_start={}, wall_seconds=4.0)
    window.cpu_seconds = {"ingestion-interface": 2.0, "emulator": 1.0}
    assert window.percent == {"ingestion-interface": 50.0, "emulator": 25.0}
    assert window.ms_per_1000(10_000) == {"ingestion-interface": 200.0, "emulator": 100.0}
    # 0.3 CPU-ms per record: one core does 3,333 records/s, every core of this machine more.
    cores = psutil.cpu_count() or 1
    assert cpu_bound_estimate(window, 10_000) == round(cores * 10_000 / 3.0)
    assert cpu_bound_estimate(window, 0) is None


def test_healthy_times_come_from_the_fleet_clis_own_lines() -> None:
    output = "\n".join(
        [
            "emulator: started (pid 10, port 4566, log x)",
            "emulator: healthy after 2.5s",
            "kinesis-consumer: healthy after 11.0s",
            "  ... 5s, waiting for log-synthesis (connection refused)",
        ]
    )
    assert healthy_after(output) == {"emulator": 2.5, "kinesis-consumer": 11.0}


def test_the_report_shows_each_target_with_its_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    step = a_step(drain_s=None, achieved_per_s=10_000.0)
    step["by_kind"]["log"] |= {"accepted": 200_000, "in_s3": 199_000, "missing": 1000}
    step["sustained"], step["verdict"] = step_verdict(step, drain_bound=5)
    step |= {
        "end_to_end_per_s": None,
        "cpu_percent": {"emulator": 80.0},
        "cpu_ms_per_1000_records": {"emulator": 60.0},
        "cpu_bound_estimate_per_s": 33_333,
    }
    result = {
        "steps": [step],
        "highest_sustained_per_s": 0,
        "peak_rss_mb": {"emulator": 200.0, "total": 200.0},
        "buckets": {"log": "md-raw-logs"},
        "stored_bytes_per_record": {"plain": {"log": 480.0}, "gzip": {}},
        "start_to_healthy_s": 30.0,
        "healthy_after_s": {"emulator": 3.0},
        "peak_total_rss_mb_by_phase": {"step 10000/s": 200.0},
        "peak_total_pss_mb": 150.0,
        "machine": {"cpus": 2},
        "rerun": "python -m benchmarks.pipeline --skip-latency",
        "options": {"gzip_flush_age": 10.0},
    }
    print_report(result, ROOT / "benchmarks" / "results" / "pipeline-x.json")
    out = capsys.readouterr().out
    assert "199,000    1000" in out
    assert "log: 1000 missing, 0 duplicated, 0 unexpected in S3" in out
    rows = {line[:58].strip(): line[58:].split() for line in out.splitlines() if "  " in line}
    assert rows["highest sustained end-to-end rate (records/s)"] == ["0", ">=", "10,000", "MISS"]
    assert rows["latency p50 at 1,000/s (s)"] == ["-", "<=", "2", "not", "measured"]
    assert rows["stored bytes/record plain, md-raw-logs"] == ["480", "<=", "500", "pass"]
    assert rows["start to all healthy (s)"] == ["30", "<=", "20", "MISS"]
    assert "peak total PSS (MB, shared pages counted once): 150.0" in out
    assert "rerun: .venv/bin/python -m benchmarks.pipeline --skip-latency" in out


def test_the_package_runs_as_a_module_with_its_options() -> None:
    # `python -m benchmarks.pipeline` is a package: its __main__ must reach the same command line.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: python -m benchmarks.pipeline")
    for option in ("--quick", "--steps", "--skip-latency", "--gzip-flush-age", "--profile"):
        assert option in shown.stdout, option
    assert "Prints a table and writes JSON" in shown.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", "--steps", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "rates must be 1..40000 records/s" in refused.stderr

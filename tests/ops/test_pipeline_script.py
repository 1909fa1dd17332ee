"""./test-pipeline.sh run as a user runs it, against a private fleet (free ports, own RUN_DIR).

It must pass on a working pipeline (starting the fleet itself when none of it runs) and fail,
saying what is wrong, when the Kinesis consumer stops in the middle of a run or is not running.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator

import psutil
import pytest

from stages.common import aws
from stages.common.config import Settings
from tests.ops.support import FleetRun, alive, private_fleet
from tests.support.lake import lake_records
from tests.support.processes import ROOT

BUCKETS = {"log": "md-raw-logs", "metric": "md-raw-metrics", "apm": "md-raw-apm"}
SUMMARY_ROW = re.compile(
    r"^(log|metric|apm)\s+stage01-\S+\s+md-raw-\S+\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:
    run = private_fleet(tmp_path_factory.mktemp("pipeline"))
    try:
        yield run
    finally:
        run.stop_all()


def ensure_started(fleet: FleetRun) -> None:
    """The fleet runs already after the first test; this is for a test run on its own."""
    if not fleet.recorded_pids():
        assert fleet.cli("start").returncode == 0


def summary(output: str) -> dict[str, tuple[int, ...]]:
    """kind -> (accepted, in S3, missing, duplicated, misplaced) from the summary table."""
    return {m[1]: tuple(int(x) for x in m.groups()[1:]) for m in SUMMARY_ROW.finditer(output)}


def test_passes_on_a_working_pipeline_and_starts_the_fleet_itself(fleet: FleetRun) -> None:
    result = fleet.script("test-pipeline.sh", "--duration", "6", "--rate", "100", timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "none of the fleet is running: starting it" in out
    assert "PASS" in out and "FAIL" not in out
    rows = summary(out)
    assert set(rows) == set(BUCKETS), out
    # 6 ticks of 100 records: every one accepted, all in S3, none twice or misplaced.
    assert sum(row[0] for row in rows.values()) == 600, out
    for kind, (accepted, in_s3, missing, duplicated, misplaced) in rows.items():
        assert accepted > 0 and in_s3 == accepted, (kind, rows[kind])
        assert missing == duplicated == misplaced == 0, (kind, rows[kind])
    assert re.search(r"^ok\s+anomaly cpu_spike .*: [1-9]\d* records in S3 labelled", out, re.M)
    assert re.search(r"^ok\s+Log Consolidation received .*: \+600;", out, re.M), out

    # What the script reports is what is in the lake: this fleet ran nothing else.
    settings = Settings(aws_endpoint_url=f"http://127.0.0.1:{fleet.emulator_port}")
    s3 = aws.client("s3", settings)
    for kind, bucket in BUCKETS.items():
        assert len(lake_records(s3, bucket)) == rows[kind][1], kind
    # The fleet it started keeps running for the user.
    assert fleet.cli("status").returncode == 0


def test_fails_when_the_consumer_stops_during_the_run(fleet: FleetRun) -> None:
    # The whole fleet (already up after the first test, unless run alone).
    assert fleet.cli("start").returncode == 0
    args = [str(ROOT / "test-pipeline.sh"), "--duration", "4", "--flush-timeout", "5"]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        head = []
        for line in proc.stdout:
            head.append(line)
            if line.startswith("==> generating"):
                break
        # SIGTERM right away, as `./stop.sh kinesis-consumer` sends it (the CLI itself would
        # take seconds to start on a loaded machine, and the run is only 4 s long): the
        # consumer flushes what it has read and exits; what comes after stays on Kinesis.
        consumer = psutil.Process(fleet.pid("kinesis-consumer"))
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(60)
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(head) + rest
    assert proc.returncode == 1, out
    assert "FAIL" in out and "PASS" not in out
    assert re.search(r"accepted records are not in s3://md-raw-\w+", out), out
    assert "the Kinesis consumer (kinesis-consumer) is not healthy" in out
    rows = summary(out)
    assert sum(row[2] for row in rows.values()) > 0, out  # the missing column says how many


def test_fails_naming_the_consumer_when_it_is_not_running(fleet: FleetRun) -> None:
    ensure_started(fleet)
    assert fleet.cli("stop", "kinesis-consumer").returncode == 0
    result = fleet.script("test-pipeline.sh", "--duration", "4", timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "the fleet is partly down: kinesis-consumer" in out
    assert "./start.sh kinesis-consumer" in out
    # A partly-down fleet is reported, not repaired, and no records are generated for it.
    assert not (fleet.run_dir / "kinesis-consumer.pid").exists()
    assert "==> generating" not in out


def test_bad_arguments_are_refused(fleet: FleetRun) -> None:
    result = fleet.script("test-pipeline.sh", "--rate", "0", timeout=60)
    assert result.returncode == 2
    assert "--rate must be between 1 and 10000" in result.stderr


def test_stop_leaves_no_process_of_the_fleet(fleet: FleetRun) -> None:
    ensure_started(fleet)
    pids = [pid for pid in fleet.recorded_pids() if alive(pid)]
    assert len(pids) >= 8, "the fleet runs (all but the consumer, after the tests above)"
    result = fleet.script("stop.sh", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(alive(pid) for pid in pids)
    assert not list(fleet.run_dir.glob("*.pid"))
    # Nor any other process of ours started with this fleet's RUN_DIR.
    leftovers = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get("RUN_DIR") == str(fleet.run_dir) and "stages." in " ".join(proc.cmdline()):
            leftovers.append(proc.pid)
    assert not [pid for pid in leftovers if alive(pid)]

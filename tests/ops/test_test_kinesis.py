"""01-ingestion/test-kinesis.sh against a fresh emulator and the real consumer process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stages.common import aws
from stages.common.config import Settings
from stages.common.lake import list_objects, read_lines
from stages.common.resource_setup import ensure_resources
from stages.common.resources import stream_for_kind
from tests.ops.support import clean_env
from tests.support.processes import (
    ROOT,
    Process,
    base_env,
    free_port,
    start_emulator,
    wait_http_ok,
)

SCRIPT = ROOT / "01-ingestion" / "test-kinesis.sh"
# An HTTP server whose every GET is a 200: a "consumer" that is healthy but reads nothing.
HEALTH_STUB = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "healthy"}')
HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


def run_script(
    endpoint: str, consumer_port: int, timeout: str = "30", **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), timeout],
        env=clean_env(AWS_ENDPOINT_URL=endpoint, CONSUMER_PORT=str(consumer_port), **env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def consumer_port(endpoint: str, proc_logs: Path) -> Iterator[int]:
    port = free_port()
    proc = Process(
        "consumer",
        [sys.executable, "-m", "stages.consumer"],
        base_env(endpoint, CONSUMER_PORT=str(port)),
        proc_logs,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", proc)
        yield port
    finally:
        proc.stop()


def lake_lines(settings: Settings, marker: str) -> list[str]:
    s3 = aws.client("s3", settings)
    bucket = stream_for_kind(settings, "log").bucket
    found = []
    for obj in list_objects(s3, bucket):
        lines = [ln.decode() for ln in read_lines(s3, bucket, obj["Key"]).require_complete().lines]
        found += [f"{obj['Key']}: {ln}" for ln in lines if marker in ln]
    return found


def test_record_reaches_the_lake_exactly_once(
    endpoint: str, settings: Settings, consumer_port: int
) -> None:
    result = run_script(endpoint, consumer_port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: record" in result.stdout and "exactly once" in result.stdout
    event_id = result.stdout.split("put event_id=")[1].split()[0]
    # Checked independently of the script: one line, in the record's own hour partition.
    lines = lake_lines(settings, event_id)
    assert len(lines) == 1, lines
    key = lines[0].split(":", 1)[0]
    assert key.startswith("service=test-kinesis/year=")
    hour = key.split("hour=")[1][:2]
    assert f"hour={hour}/" in result.stdout


def test_names_and_region_come_from_the_same_settings_as_the_services(proc_logs: Path) -> None:
    names = {"STREAM_PREFIX": "acme-", "BUCKET_PREFIX": "acme-lake-", "AWS_REGION": "eu-west-1"}
    emulator, endpoint = start_emulator(proc_logs, provision=False)
    settings = Settings(
        aws_endpoint_url=endpoint,
        aws_region="eu-west-1",
        stream_prefix="acme-",
        bucket_prefix="acme-lake-",
    )
    port = free_port()
    try:
        ensure_resources(settings)
    except BaseException:
        emulator.stop()
        raise
    consumer = Process(
        "consumer",
        [sys.executable, "-m", "stages.consumer"],
        base_env(endpoint, CONSUMER_PORT=str(port), FLUSH_MAX_AGE_SECONDS="0.5", **names),
        proc_logs,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", consumer)
        result = run_script(endpoint, port, **names)
        assert result.returncode == 0, result.stdout + result.stderr
        event_id = result.stdout.split("put event_id=")[1].split()[0]
        assert len(lake_lines(settings, event_id)) == 1
    finally:
        consumer.stop()
        emulator.stop()


def test_fails_fast_when_the_consumer_is_not_running(endpoint: str, settings: Settings) -> None:
    began = time.monotonic()
    result = run_script(endpoint, free_port())
    assert result.returncode != 0
    assert time.monotonic() - began < 10
    assert "consumer is not running" in result.stderr
    # Nothing was put on the stream for a consumer that is not there.
    kinesis = aws.client("kinesis", settings)
    for shard in kinesis.list_shards(StreamName="stage01-logs-stream")["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName="stage01-logs-stream",
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        assert kinesis.get_records(ShardIterator=iterator)["Records"] == []


def test_fails_with_a_message_when_the_record_never_arrives(endpoint: str) -> None:
    # A stand-in that answers /health but consumes nothing: the script must time out, not hang.
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-c", HEALTH_STUB, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health")
        result = run_script(endpoint, port, timeout="3")
    finally:
        stub.kill()
        stub.wait()
    assert result.returncode != 0
    assert "not in s3://md-raw-logs/service=test-kinesis/" in result.stderr
    assert "after 3s" in result.stderr

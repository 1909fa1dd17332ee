"""The `stages` console entry point ([project.scripts]), run as installed: its subcommands do
what the shell scripts do, with the same environment and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from stages.common import aws, resources
from stages.common.config import Settings
from tests.ops.support import FleetRun, clean_env
from tests.support.processes import ROOT, Process, start_emulator

STAGES = Path(sys.executable).parent / "stages"
COMMANDS = ("start", "stop", "status", "provision", "check")


def stages(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(STAGES), *args],
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_the_entry_point_is_installed_and_lists_its_commands() -> None:
    assert STAGES.is_file(), "pip install -e . puts a `stages` script into the venv"
    top = stages("--help")
    assert top.returncode == 0, top.stderr
    for command in COMMANDS:
        assert command in top.stdout
    for command in COMMANDS:
        result = stages(command, "--help")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(f"usage: stages {command}"), result.stdout
    assert "--duration" in stages("check", "--help").stdout
    unknown = stages("launch")
    assert unknown.returncode == 2 and "invalid choice: 'launch'" in unknown.stderr


def test_start_status_stop(fleet_run: FleetRun) -> None:
    down = stages("status", "emulator", env=fleet_run.env)
    assert down.returncode == 3, down.stdout + down.stderr
    assert down.stdout == fleet_run.cli("status", "emulator").stdout

    started = stages("start", "emulator", env=fleet_run.env)
    assert started.returncode == 0, started.stdout + started.stderr
    pid = fleet_run.pid("emulator")
    up = stages("status", "emulator", env=fleet_run.env)
    assert up.returncode == 0, up.stdout
    line = next(ln for ln in up.stdout.splitlines() if ln.startswith("emulator "))
    assert str(pid) in line and "healthy" in line, line

    stopped = stages("stop", env=fleet_run.env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "emulator: stopping" in stopped.stdout
    assert stages("status", "emulator", env=fleet_run.env).returncode == 3


@pytest.fixture
def bare_emulator(proc_logs: Path) -> str:
    proc: Process
    proc, endpoint = start_emulator(proc_logs, provision=False)
    yield endpoint
    proc.stop()


def test_provision_creates_what_the_settings_name(bare_emulator: str) -> None:
    env = clean_env(
        AWS_ENDPOINT_URL=bare_emulator,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        BUCKET_PREFIX="cli-",
    )
    first = stages("provision", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "resources ready" in first.stdout
    assert "created bucket cli-raw-logs" in first.stderr
    settings = Settings(aws_endpoint_url=bare_emulator, bucket_prefix="cli-")
    buckets = {b["Name"] for b in aws.client("s3", settings).list_buckets()["Buckets"]}
    assert buckets == set(resources.buckets(settings))
    streams = aws.client("kinesis", settings).list_streams()["StreamNames"]
    assert sorted(streams) == sorted(spec.name for spec in resources.streams(settings))
    tables = aws.client("dynamodb", settings).list_tables()["TableNames"]
    assert sorted(tables) == sorted(resources.lease_tables(settings))

    again = stages("provision", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "created" not in again.stderr

    as_json = stages("provision", env=env | {"LOG_FORMAT": "json"})
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    lines = [json.loads(line) for line in (as_json.stdout + as_json.stderr).splitlines()]
    assert [line["message"] for line in lines] == ["resources ready"]


class _ForeignBucketProxy(BaseHTTPRequestHandler):
    """In front of the emulator: the bucket ``taken-raw-logs`` belongs to another account (S3
    answers 403 to HeadBucket, 409 BucketAlreadyExists to CreateBucket); the rest is forwarded."""

    upstream = ""
    taken = "/taken-raw-logs"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.split("?")[0].rstrip("/") == self.taken:
            status = 403 if self.command == "HEAD" else 409
            code = "AccessDenied" if status == 403 else "BucketAlreadyExists"
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            payload = (
                b"" if self.command == "HEAD" else f"<Error><Code>{code}</Code></Error>".encode()
            )
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}
        }
        answer = httpx.request(
            self.command, self.upstream + self.path, headers=headers, content=body, timeout=30
        )
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in {
                "content-length",
                "transfer-encoding",
                "connection",
                "content-encoding",
            }:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


def test_provision_refuses_a_bucket_name_another_account_owns(bare_emulator: str) -> None:
    handler = type("Proxy", (_ForeignBucketProxy,), {"upstream": bare_emulator})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = clean_env(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_address[1]}",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            BUCKET_PREFIX="taken-",
        )
        result = stages("provision", env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bucket taken-raw-logs belongs to another AWS account" in result.stderr
    assert "BUCKET_PREFIX" in result.stderr
    assert "resources ready" not in result.stdout

"""One logging setup for every process: LOG_FORMAT=json makes every line of a process's output
a JSON object, and the lines written during an HTTP request carry its request id."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.lake import ConsumerProcess
from tests.support.processes import (
    ROOT,
    Process,
    base_env,
    free_port,
    start_emulator,
    start_service,
)

SEED_LOG = {"timestamp": "2025-11-09T13:24:33Z", "service": "api-gateway", "level": "INFO"}
KINESIS_WARNING = "Kinesis did not take every record"


def _json_lines(proc: Process) -> list[dict[str, Any]]:
    lines = proc.log_path.read_text().splitlines()
    assert lines, f"{proc.name} wrote nothing"
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            body = json.loads(line)
        except ValueError:
            raise AssertionError(f"{proc.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(body, dict), line
        assert {"time", "level", "logger", "message"} <= set(body), line
        parsed.append(body)
    return parsed


def _ingestion_without_kinesis(proc_logs: Path, tmp_path: Path, **env: str) -> tuple[Process, str]:
    """An Ingestion Interface whose Kinesis and Log Consolidation are down: every ingest writes
    a warning while the request runs (the records go to the spool)."""
    dead, port = free_port(), free_port()
    environment = base_env(
        f"http://127.0.0.1:{dead}",
        INGESTION_PORT=str(port),
        CONSOLIDATION_PORT=str(dead),
        DATA_DIR=str(tmp_path / "data"),
        INGEST_KINESIS_TIMEOUT_SECONDS="1",
        PRODUCER_MAX_RETRIES="1",
        **env,
    )
    return start_service("ingestion", environment, proc_logs, port, f"ingestion-{port}")


def _ingest(url: str, headers: dict[str, str]) -> httpx.Response:
    body = SEED_LOG | {"message": "logged"}
    resp = httpx.post(f"{url}/api/ingest", json=body, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp


def _wait_for_line(proc: Process, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log_path.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in {proc.name}'s log"
        time.sleep(0.1)


def test_json_logs_are_json_on_every_line_with_the_request_id(
    tmp_path: Path, proc_logs: Path
) -> None:
    proc, url = _ingestion_without_kinesis(proc_logs, tmp_path, LOG_FORMAT="json")
    try:
        # Only the first ingest tries Kinesis while the request runs (later ones find records
        # already spooled and join them): its warning is the line to look for.
        new_id = _ingest(url, {}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", new_id), new_id
        _wait_for_line(proc, new_id)
        assert _ingest(url, {"X-Request-ID": "req-42"}).headers["x-request-id"] == "req-42"
        replaced = httpx.get(f"{url}/health", headers={"X-Request-ID": "a b"}, timeout=5)
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
    finally:
        proc.stop()
    lines = _json_lines(proc)
    in_request = [line for line in lines if line.get("request_id") == new_id]
    assert [line["message"][: len(KINESIS_WARNING)] for line in in_request] == [KINESIS_WARNING]
    assert in_request[0]["level"] == "WARNING"
    assert in_request[0]["logger"] == "stages.ingestion.kinesis"
    # Lines written outside a request (the spool's drain, its retries) carry none.
    assert any("request_id" not in line for line in lines)


def test_text_logs_name_the_request_id(tmp_path: Path, proc_logs: Path) -> None:
    proc, url = _ingestion_without_kinesis(proc_logs, tmp_path)
    try:
        _ingest(url, {"X-Request-ID": "req-7"})
        _wait_for_line(proc, "request_id=req-7")
    finally:
        proc.stop()
    line = next(ln for ln in proc.log_path.read_text().splitlines() if "request_id=req-7" in ln)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING stages\.ingestion\.", line), line
    assert line.endswith(" request_id=req-7")


def test_the_emulator_and_the_consumer_log_json(proc_logs: Path) -> None:
    emulator, endpoint = start_emulator(proc_logs, LOG_FORMAT="json")
    consumer = ConsumerProcess(endpoint, proc_logs, LOG_FORMAT="json")
    try:
        consumer.wait_healthy()
        assert httpx.get(f"{consumer.url}/health", timeout=5).status_code == 200
    finally:
        consumer.stop()
        emulator.stop()
    ready = [line for line in _json_lines(emulator) if line["message"].startswith("EMULATOR READY")]
    assert [line["endpoint"] for line in ready] == [endpoint]
    assert any("reading" in line["message"] for line in _json_lines(consumer))


CRASH = """
import threading, warnings
from stages.common.config import Settings
from stages.common.logging_setup import configure_logging

configure_logging(Settings(log_format="json"))
warnings.warn("a library warns")
worker = threading.Thread(target=lambda: 1 / 0, name="worker")
worker.start()
worker.join()
raise RuntimeError("the main thread dies")
"""


def test_warnings_and_uncaught_exceptions_are_json_lines_too() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CRASH], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    lines = [json.loads(line) for line in (result.stdout + result.stderr).splitlines()]
    assert [(line["level"], line["message"].split("\n")[0]) for line in lines] == [
        ("WARNING", "<string>:7: UserWarning: a library warns"),
        ("CRITICAL", "uncaught exception in thread worker"),
        ("CRITICAL", "uncaught exception"),
    ]
    assert lines[1]["exception"].endswith("ZeroDivisionError: division by zero")
    assert lines[2]["exception"].endswith("RuntimeError: the main thread dies")

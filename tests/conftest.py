"""Shared fixtures: a real moto server subprocess per test (fresh state) and its settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stages.common.config import Settings
from tests.support.processes import Process, start_emulator

# The test process's clients and the children it starts (tests.support.processes.base_env) talk
# to the same emulator region, whatever region the developer's shell or AWS profile names.
for _name in ("AWS_REGION", "AWS_PROFILE"):
    os.environ.pop(_name, None)
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
# FastAPI's TestClient sends "Host: testserver"; the services answer only names in their
# allow-list (ALLOWED_HOSTS adds to it), so the tests' in-process clients are named there.
os.environ.setdefault("ALLOWED_HOSTS", "testserver")


@pytest.fixture
def proc_logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def emulator(proc_logs: Path) -> Iterator[tuple[Process, str]]:
    """A fresh embedded emulator (moto server subprocess) with the default resources."""
    proc, endpoint = start_emulator(proc_logs)
    yield proc, endpoint
    proc.stop()


@pytest.fixture
def endpoint(emulator: tuple[Process, str]) -> str:
    return emulator[1]


@pytest.fixture
def settings(endpoint: str) -> Settings:
    return Settings(aws_endpoint_url=endpoint)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault suite's load reports, whichever worker ran them (see tests/faults/conftest.py)."""
    reports = [
        value
        for outcome in ("passed", "failed", "error")
        for test_report in terminalreporter.stats.get(outcome, [])
        for name, value in getattr(test_report, "user_properties", ())
        if name == "load_report"
    ]
    if reports:
        terminalreporter.section("fault suite load reports")
        for text in reports:
            terminalreporter.write_line(text)
            terminalreporter.write_line("")

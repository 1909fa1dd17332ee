"""One emulator and one dashboard process per module: starting them costs seconds on a loaded
2-core machine, and every test here reads different buckets or keys of the same lake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stages.common import aws
from stages.common.config import Settings
from tests.dashboard.helpers import DashboardProcess
from tests.support.processes import Process, start_emulator


@pytest.fixture(scope="module")
def module_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def lake_emulator(module_logs: Path) -> Iterator[tuple[Process, str]]:
    proc, endpoint = start_emulator(module_logs)
    yield proc, endpoint
    proc.stop()


@pytest.fixture(scope="module")
def lake_endpoint(lake_emulator: tuple[Process, str]) -> str:
    return lake_emulator[1]


@pytest.fixture(scope="module")
def s3(lake_endpoint: str) -> Any:
    return aws.client("s3", Settings(aws_endpoint_url=lake_endpoint))


@pytest.fixture(scope="module")
def dashboard(lake_endpoint: str, module_logs: Path) -> Iterator[DashboardProcess]:
    # A long cache, so that a test sees the difference between cached and fresh totals.
    proc = DashboardProcess(
        lake_endpoint, module_logs, DASHBOARD_CACHE_SECONDS="300", DASHBOARD_SAMPLE_SECONDS="0.5"
    )
    try:
        proc.wait_healthy(60)
        yield proc
    finally:
        proc.stop()

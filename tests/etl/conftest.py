"""One emulator per ETL test module, reset to an empty lake before each test that asks for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stages.common.config import Settings
from tests.etl.support import reset
from tests.support.processes import Process, start_emulator


@pytest.fixture(scope="module")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, str]]:
    logs = tmp_path_factory.mktemp("emulator-logs")
    proc, endpoint = start_emulator(logs)
    yield proc, endpoint
    proc.stop()


@pytest.fixture
def lake_settings(shared_emulator: tuple[Process, str]) -> Settings:
    settings = Settings(aws_endpoint_url=shared_emulator[1])
    reset(settings)
    return settings


@pytest.fixture
def lake_endpoint(shared_emulator: tuple[Process, str], lake_settings: Settings) -> str:
    return shared_emulator[1]


@pytest.fixture
def etl_logs(tmp_path: Path) -> Path:
    path = tmp_path / "etl-logs"
    path.mkdir()
    return path

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stages.common.config import Settings
from stages.orchestrator.app import create_app
from tests.orchestrator.stubs import Peers, start_peers


@pytest.fixture
def peers() -> Iterator[Peers]:
    peers, server = start_peers()
    yield peers
    server.stop()


@pytest.fixture
def settings(peers: Peers, tmp_path: Path) -> Settings:
    return Settings(synthesis_port=peers.port, state_port=peers.port, data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client

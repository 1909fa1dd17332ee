"""No API answer shows where the server keeps its files: every GET route of every service, and
the emulator's health, is read with DATA_DIR and RUN_DIR set to absolute paths, and no answer
may contain either (a path relative to the data directory is fine)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stages.common.config import Settings
from stages.consolidation.app import create_app as consolidation_app
from stages.dashboard.app import create_app as dashboard_app
from stages.ingestion.app import create_app as ingestion_app
from stages.orchestrator.app import create_app as orchestrator_app
from stages.patterns.app import create_app as patterns_app
from stages.state.app import create_app as state_app
from stages.synthesis.app import create_app as synthesis_app
from tests.support.processes import Process, free_port, start_emulator

APPS: dict[str, Callable[[Settings], FastAPI]] = {
    "orchestrator": orchestrator_app,
    "patterns": patterns_app,
    "synthesis": synthesis_app,
    "state": state_app,
    "ingestion": ingestion_app,
    "consolidation": consolidation_app,
    "dashboard": dashboard_app,
}


@pytest.fixture(scope="module")
def server_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("server").resolve()
    return root / "data", root / "run"


@pytest.fixture(scope="module")
def lake(
    server_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Process, str]]:
    data_dir, run_dir = server_dirs
    proc, endpoint = start_emulator(
        tmp_path_factory.mktemp("logs"), DATA_DIR=str(data_dir), RUN_DIR=str(run_dir)
    )
    yield proc, endpoint
    proc.stop()


def _leaks(value: Any, needles: tuple[str, ...], where: str = "$") -> list[str]:
    if isinstance(value, str):
        return [f"{where} = {value!r}" for n in needles if n in value]
    if isinstance(value, dict):
        return [leak for k, v in value.items() for leak in _leaks(v, needles, f"{where}.{k}")]
    if isinstance(value, list):
        return [leak for i, v in enumerate(value) for leak in _leaks(v, needles, f"{where}[{i}]")]
    return []


def _answers(client: TestClient) -> Iterator[tuple[str, httpx.Response]]:
    """Every documented GET route and the pages, as a browser or a script would call them; a
    path parameter gets a name nothing has, so error answers are read too."""
    schema = client.get("/openapi.json").json()
    paths = [p for p, ops in schema["paths"].items() if "get" in ops]
    for path in ["/", "/openapi.json", *paths]:
        url = re.sub(r"\{[^}]+\}", "no-such-name", path)
        yield url, client.get(url)


@pytest.mark.parametrize("name", sorted(APPS))
def test_no_answer_shows_the_servers_data_or_run_directory(
    name: str, server_dirs: tuple[Path, Path], lake: tuple[Process, str]
) -> None:
    data_dir, run_dir = server_dirs
    nobody = free_port()  # peers are down: their errors are answers too
    settings = Settings(
        aws_endpoint_url=lake[1],
        data_dir=data_dir,
        run_dir=run_dir,
        **{f"{peer}_port": nobody for peer in ("patterns", "state", "synthesis", "ingestion")},
        consolidation_port=nobody,
        consumer_port=nobody,
    )
    needles = (str(data_dir), str(run_dir))
    app = APPS[name](settings)
    read = 0
    leaks: list[str] = []
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path, response in _answers(client):
            read += 1
            if response.headers.get("content-type", "").startswith("application/json"):
                leaks += _leaks(response.json(), needles, path)
            else:
                leaks += [f"{path}: {n}" for n in needles if n in response.text]
    assert read >= 5, f"{name}: too few routes read"
    assert not leaks, leaks


def test_the_emulators_health_shows_no_server_directory(
    server_dirs: tuple[Path, Path], lake: tuple[Process, str]
) -> None:
    response = httpx.get(f"{lake[1]}/_localstack/health")
    assert response.status_code == 200
    assert not _leaks(response.json(), tuple(str(d) for d in server_dirs))

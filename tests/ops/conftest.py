"""Fixtures for the operations tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stages.common import fleet
from tests.ops.support import FleetRun, alive, clean_env
from tests.support.processes import free_port


@pytest.fixture
def fleet_run(tmp_path: Path) -> Iterator[FleetRun]:
    run_dir = tmp_path / "run"
    # Every service on a free port and data under tmp, so a fleet started by a test never
    # meets one a developer is running (or another test's).
    ports = {svc.port_env: str(free_port()) for svc in fleet.SERVICES}
    env = clean_env(RUN_DIR=str(run_dir), DATA_DIR=str(tmp_path / "data"), **ports)
    run = FleetRun(run_dir, env)
    yield run
    # Whatever a failed test left behind: stop through the CLI, then make sure by pid.
    pids = run.recorded_pids()
    run.cli("stop", "--timeout", "10")
    for pid in pids:
        if alive(pid) and "stages." in " ".join(psutil.Process(pid).cmdline()):
            psutil.Process(pid).kill()

"""Fixtures for the operations tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.ops.support import FleetRun, alive, private_fleet


@pytest.fixture
def fleet_run(tmp_path: Path) -> Iterator[FleetRun]:
    run = private_fleet(tmp_path)
    yield run
    # Whatever a failed test left behind: stop through the CLI, then make sure by pid.
    pids = run.recorded_pids()
    run.cli("stop", "--timeout", "10")
    for pid in pids:
        if alive(pid) and "stages." in " ".join(psutil.Process(pid).cmdline()):
            psutil.Process(pid).kill()

"""Run the repo's scripts and the fleet CLI as a user would, with private ports and RUN_DIR."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from stages.ops import registry
from tests.support.processes import ROOT, free_port

# Variables that would point a child at the user's own stack instead of the test's.
_LEAKY_PREFIXES = ("AWS_", "CONSUMER_", "EMULATOR_", "FLUSH_", "PRODUCER_", "LEASE_", "LOCALSTACK_")
_LEAKY_NAMES = {"RUN_DIR", "EMBEDDED_EMULATOR", "LOG_LEVEL", "TEST_SERVICE"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_LEAKY_PREFIXES) and k not in _LEAKY_NAMES
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    """Running and not a zombie (orphans stay zombies here until init reaps them)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class FleetRun:
    """A private RUN_DIR and private ports, so tests never touch a stack the user runs."""

    run_dir: Path
    env: dict[str, str]

    @property
    def emulator_port(self) -> int:
        return int(self.env["EMULATOR_PORT"])

    @property
    def consumer_port(self) -> int:
        return int(self.env["CONSUMER_PORT"])

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[registry.BY_NAME[service].port_env]}"

    def cli(self, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "stages.ops.fleet", *args],
            cwd=ROOT,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def script(self, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(ROOT / name), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def pid(self, service: str) -> int:
        return int((self.run_dir / f"{service}.pid").read_text())

    def stop_all(self) -> None:
        """``stop`` as a user runs it, then SIGKILL for any of our processes it left running, so
        a failed stop cannot leak services into the rest of the suite."""
        pids = self.recorded_pids()
        self.cli("stop", "--timeout", "30")
        for pid in pids:
            if alive(pid) and "stages." in " ".join(psutil.Process(pid).cmdline()):
                psutil.Process(pid).kill()

    def recorded_pids(self) -> list[int]:
        pids = []
        for path in self.run_dir.glob("*.pid"):
            with contextlib.suppress(ValueError):
                pids.append(int(path.read_text()))
        return pids


def private_fleet(root: Path, **extra: str) -> FleetRun:
    """A fleet under ``root`` (RUN_DIR, DATA_DIR) with every service on a free port, so it never
    meets one a developer is running, or another test's."""
    ports = {svc.port_env: str(free_port()) for svc in registry.SERVICES}
    env = clean_env(RUN_DIR=str(root / "run"), DATA_DIR=str(root / "data"), **ports, **extra)
    return FleetRun(root / "run", env)

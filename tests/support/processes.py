"""Start and stop the project's real processes (emulator, consumer, ...) for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


# Every port this process handed out: the kernel may give the same free port to two binds in
# a row once the first socket is closed, and a fleet of ten services on free ports once got one
# port twice (the second service then refused to start).
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now on 127.0.0.1, never one this process handed out before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def base_env(endpoint: str, **extra: str) -> dict[str, str]:
    """Environment for a child process talking to the emulator at ``endpoint``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CONSUMER_", "FLUSH_", "PRODUCER_", "LEASE_"))
    }
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Process:
    """A child process whose output goes to a log file the test can show on failure."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.popen = subprocess.Popen(
            args, env=dict(env), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        try:
            self.terminate(10)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()


# A service starts in a few seconds on an idle machine; a loaded CI machine can take ten times that.
START_TIMEOUT_SECONDS = 60.0


def wait_http_ok(
    url: str, proc: Process | None = None, timeout: float = START_TIMEOUT_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            resp = httpx.get(url, timeout=2)
            if resp.status_code == 200:
                return
            last = f"{resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    tail = proc.log_tail() if proc else ""
    raise TimeoutError(f"{url} not healthy after {timeout}s ({last})\n{tail}")


def start_emulator(log_dir: Path, *, provision: bool = True, **env: str) -> tuple[Process, str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "stages.emulator", "--port", str(port)]
    if not provision:
        args.append("--no-provision")
    proc = Process(f"emulator-{port}", args, base_env(endpoint, **env), log_dir)
    wait_http_ok(f"{endpoint}/_localstack/health", proc)
    return proc, endpoint


def start_service(
    package: str, env: Mapping[str, str], log_dir: Path, port: int, name: str | None = None
) -> tuple[Process, str]:
    """``python -m stages.<package>`` with ``env`` (which puts it on ``port``), once healthy;
    its output goes to ``log_dir/<name>.log`` (``name`` defaults to the package)."""
    proc = Process(name or package, [sys.executable, "-m", f"stages.{package}"], env, log_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/health", proc)
    except BaseException:
        proc.stop()
        raise
    return proc, url

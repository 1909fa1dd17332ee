"""The orchestrator and its real peers as processes (``python -m stages.<name>``); the stub
peers stand in for whatever is not started (and record what arrived, e.g. ingested records)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.orchestrator.stubs import Peers, start_peers
from tests.support.processes import Process, base_env, free_port, wait_http_ok


def start_services(
    tmp_path: Path, services: dict[str, int], stub_port: int
) -> tuple[list[Process], dict[str, str]]:
    """Start ``python -m stages.<name>`` for each name; every other peer is the stub."""
    ports = {"state": stub_port, "synthesis": stub_port, "ingestion": stub_port, **services}
    env = base_env(
        "http://127.0.0.1:1",
        DATA_DIR=str(tmp_path / "data"),
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
    )
    env.pop("CONTROL_TOKEN", None)
    procs, urls = [], {}
    try:
        # all started before waiting for any: their imports overlap
        for name, port in services.items():
            procs.append(Process(name, [sys.executable, "-m", f"stages.{name}"], env, tmp_path))
            urls[name] = f"http://127.0.0.1:{port}"
        for proc in procs:
            wait_http_ok(f"{urls[proc.name]}/health", proc, timeout=60)
    except Exception:
        for proc in procs:
            proc.stop()
        raise
    return procs, urls


@contextmanager
def running(tmp_path: Path, *names: str) -> Iterator[tuple[dict[str, str], Peers]]:
    """The named services as processes, the stub for the rest; yields (urls, stub)."""
    peers, server = start_peers()
    try:
        procs, urls = start_services(tmp_path, {name: free_port() for name in names}, peers.port)
        try:
            yield urls, peers
        finally:
            for proc in procs:
                proc.stop()
    finally:
        server.stop()

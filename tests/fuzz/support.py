"""Every built HTTP service of the fleet, running for the fuzz and abuse tests.

A service whose package has ``app.create_app(settings)`` is served in this process by uvicorn on
a private port (a real HTTP server, so body limits and headers behave as in production, without a
second interpreter's start-up cost); one without it (the Kinesis consumer, whose health app lives
inside its worker) is started as a real process. All of them talk to one private emulator, write
under a private DATA_DIR each, and run with CONTROL_TOKEN set. Their peers point at a port where
nothing listens: fuzzing must never start real generation across the fleet, and "peer
unavailable" (503 with Retry-After) is one of the answers being checked. The one live link,
ingestion -> Log Consolidation, is in ``LIVE_PEERS``.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
from fastapi import FastAPI

from stages.common.config import Settings, get_settings
from stages.ops import registry
from stages.ops.registry import Service
from tests.support.processes import Process, base_env, free_port, start_emulator, wait_http_ok

TOKEN = "fuzz-control-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Examples per operation and generation mode; raise it for a longer hunt (see docs/testing.md).
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
START_TIMEOUT = 60.0

AppFactory = Callable[[Settings], FastAPI]


def http_services() -> list[Service]:
    """The registry's built services that answer HTTP (the emulator is moto's, not ours)."""
    return [svc for svc in registry.SERVICES if svc.name != registry.EMULATOR and svc.available()]


def app_factory(svc: Service) -> AppFactory | None:
    try:
        module = importlib.import_module(f"{svc.module}.app")
    except ModuleNotFoundError as exc:
        if exc.name != f"{svc.module}.app":
            raise  # the app exists but cannot be imported: a failure, not "run it as a process"
        return None
    return getattr(module, "create_app", None)


@dataclass
class Target:
    """One running service: where it answers and where it may write."""

    service: Service
    url: str
    data_dir: Path
    in_process: bool
    emulator: str
    stop: Callable[[], None] = field(repr=False)
    process: Process | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_until_up(self) -> None:
        if self.process is not None:
            # The OpenAPI document answers as soon as the HTTP server is up, healthy or not.
            wait_http_ok(f"{self.url}/openapi.json", self.process, timeout=START_TIMEOUT)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


class ThreadServer:
    """uvicorn serving one app from a thread, stopped (lifespan shutdown included) on request."""

    def __init__(self, app: FastAPI, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"fuzz-{port}", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("in-process server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


# The one peer link kept alive: ingestion forwards to Log Consolidation, so a test can see that
# the data path sends the control token. Every other peer is dead (see the module docstring).
LIVE_PEERS: dict[str, dict[str, str]] = {
    "ingestion-interface": {"consolidation_port": "log-consolidation"},
}


def _dead_peer_ports(svc: Service, dead_port: int) -> dict[str, int]:
    """Every ``<peer>_port`` setting but the service's own and the emulator's."""
    return {
        name: dead_port
        for name in Settings.model_fields
        if name.endswith("_port") and name not in {svc.port_setting, "emulator_port"}
    }


def serve_in_process(app: FastAPI) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` on a free port from this process: (its URL, how to stop it)."""
    port = free_port()
    server = ThreadServer(app, port)
    server.start()
    return f"http://127.0.0.1:{port}", server.stop


def _start_in_process(
    svc: Service, factory: AppFactory, endpoint: str, root: Path, peer_ports: dict[str, int]
) -> Target:
    data_dir = root / "data"
    settings = Settings(
        aws_endpoint_url=endpoint,
        data_dir=data_dir,
        run_dir=root / "run",
        control_token=TOKEN,
        **peer_ports,
    )
    url, stop = serve_in_process(factory(settings))
    return Target(svc, url, data_dir, True, endpoint, stop)


def _start_process(svc: Service, endpoint: str, root: Path, dead_port: int) -> Target:
    port = free_port()
    data_dir = root / "data"
    env = base_env(
        endpoint,
        CONTROL_TOKEN=TOKEN,
        DATA_DIR=str(data_dir),
        RUN_DIR=str(root / "run"),
        **{name.upper(): str(dead_port) for name in _dead_peer_ports(svc, dead_port)},
        **{svc.port_env: str(port)},
    )
    proc = Process(f"{svc.name}-{port}", [sys.executable, "-m", svc.module], env, root)
    url = f"http://127.0.0.1:{port}"
    return Target(svc, url, data_dir, False, endpoint, proc.stop, proc)


@contextmanager
def running_services(root: Path) -> Iterator[dict[str, Target]]:
    """Every built HTTP service, on private ports under ``root``, with CONTROL_TOKEN set."""
    previous = os.environ.get("CONTROL_TOKEN")
    # The ControlToken dependency reads the process-wide settings, so the in-process apps need
    # the token in the environment too.
    os.environ["CONTROL_TOKEN"] = TOKEN
    get_settings.cache_clear()
    emulator, endpoint = start_emulator(root)
    dead_port = free_port()
    targets: dict[str, Target] = {}
    try:
        # Processes first: they start while the in-process apps do.
        services = sorted(http_services(), key=lambda svc: app_factory(svc) is not None)
        for svc in services:
            svc_root = root / svc.name
            svc_root.mkdir()
            factory = app_factory(svc)
            if factory is not None:
                peers = _dead_peer_ports(svc, dead_port) | {
                    setting: targets[peer].port
                    for setting, peer in LIVE_PEERS.get(svc.name, {}).items()
                }
                targets[svc.name] = _start_in_process(svc, factory, endpoint, svc_root, peers)
            else:
                targets[svc.name] = _start_process(svc, endpoint, svc_root, dead_port)
        for target in targets.values():
            target.wait_until_up()
        yield targets
    finally:
        for target in targets.values():
            target.stop()
        emulator.stop()
        if previous is None:
            os.environ.pop("CONTROL_TOKEN", None)
        else:
            os.environ["CONTROL_TOKEN"] = previous
        get_settings.cache_clear()


MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Operation:
    """One operation of a service's OpenAPI document, with its ``$ref``s resolvable."""

    method: str
    path: str
    spec: dict[str, Any]
    document: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, fill: str = "fuzz") -> str:
        """The path with every parameter set to ``fill`` (percent-encoded, '/' included)."""
        path = self.path
        for param in self.parameters("path"):
            path = path.replace("{" + param["name"] + "}", quote(fill, safe=""))
        return path

    def parameters(self, location: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == location]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def json_body_schema(self) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            return None
        return self.resolve(content["application/json"].get("schema", {}))

    @property
    def takes_body(self) -> bool:
        return "requestBody" in self.spec


def operations(target: Target) -> list[Operation]:
    document = httpx.get(f"{target.url}/openapi.json", timeout=30).raise_for_status().json()
    return [
        Operation(method.upper(), path, spec, document)
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method.upper() in {"GET", "HEAD", *MUTATING_METHODS}
    ]

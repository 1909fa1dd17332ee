"""Static checks of the Stage 01 compose file and the Dockerfile against the fleet registry.

No Docker engine runs here, so these hold the files to what the code expects: service names and
ports from stages/common/fleet.py, health checks everywhere, and only environment variables that
stages/common/config.py actually reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stages.common import fleet
from stages.common.config import Settings
from tests.support.processes import ROOT

COMPOSE_FILES = [ROOT / "01-ingestion" / "docker-compose.yml"]
# Read by boto3 itself (the credential chain), not by our settings.
AWS_STANDARD_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for mapping in service.get("ports", []):
        ports.add(int(str(mapping).rsplit(":", 1)[-1].split("/")[0]))
    return ports


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compose_matches_the_registry(path: Path) -> None:
    compose = load(path)
    services = compose["services"]
    settings_env = {name.upper() for name in Settings.model_fields}
    assert services, "no services"
    for name, svc in services.items():
        assert "healthcheck" in svc and svc["healthcheck"]["test"], f"{name}: no health check"
        if name == "localstack":
            assert not str(svc["image"]).endswith(":latest"), "pin a LocalStack tag"
            continue
        assert name in fleet.BY_NAME, f"{name} is not a service of stages/common/fleet.py"
        entry = fleet.BY_NAME[name]
        env = env_of(svc)
        # Every variable is one the code reads; a typo would be silently ignored otherwise.
        unknown = set(env) - settings_env - AWS_STANDARD_ENV
        assert not unknown, f"{name}: variables no setting reads: {sorted(unknown)}"
        # The service listens on the registry's port, on all interfaces inside the container.
        port = int(env.get(entry.port_env, entry.default_port))
        assert port == entry.default_port, f"{name}: {entry.port_env}={port}"
        assert container_ports(svc) == {entry.default_port}, f"{name}: ports {svc.get('ports')}"
        assert env.get(entry.host_setting.upper()) == "0.0.0.0", f"{name}: binds loopback only"
        for mapping in svc.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name}: publish on loopback only"
        # It runs the registry's module and is probed through the registry.
        command = " ".join(svc.get("command", ["python", "-m", "stages.consumer"]))
        assert f"python -m {entry.module}" in command, f"{name}: command {command}"
        health = " ".join(svc["healthcheck"]["test"])
        assert f"stages.common.fleet probe {name}" in health, f"{name}: healthcheck {health}"
        # Dependencies present in the same file are waited for until healthy.
        for dep in entry.depends_on:
            dep_name = "localstack" if dep == fleet.EMULATOR else dep
            if dep_name in services:
                condition = svc["depends_on"][dep_name]["condition"]
                assert condition == "service_healthy", f"{name} -> {dep_name}"
        build = svc["build"]
        context = (path.parent / build["context"]).resolve()
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()
        assert context == ROOT


def test_stage01_compose_runs_the_consumer_against_an_existing_localstack() -> None:
    services = load(COMPOSE_FILES[0])["services"]
    consumer = services["kinesis-consumer"]
    env = env_of(consumer)
    assert env["AWS_ENDPOINT_URL"].startswith("${AWS_ENDPOINT_URL:-http://")
    # Resources are created if the LocalStack was started without the init hook.
    assert "python -m stages.common.provision &&" in " ".join(consumer["command"])
    # The consumer flushes on SIGTERM within its own 30 s shutdown limit.
    grace = int(str(consumer["stop_grace_period"]).rstrip("s"))
    assert grace > 30


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [ln.split()[0] for ln in text.splitlines() if ln and not ln[0].isspace()]
    assert re.search(r"^FROM python:3\.11-slim$", text, flags=re.MULTILINE)
    assert "HEALTHCHECK" in instructions
    user = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert user and user[-1] not in {"root", "0"}
    assert "pip install ." in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".run", ".git"} <= set(ignored)

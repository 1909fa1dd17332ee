"""Static checks of the compose files and the Dockerfile against the fleet registry and the code.

No Docker engine runs here, so these hold the files to what the code expects: the services of
stages/ops/registry.py with their ports, modules, health probes and dependencies; only environment
variables that stages/common/config.py reads; the peers each service's code really calls and the
data directory it really writes, found in its source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stages.common.config import Settings
from stages.ops import registry
from tests.support.processes import ROOT

ROOT_COMPOSE = ROOT / "docker-compose.yml"
STAGE00_COMPOSE = ROOT / "00-mock-servers" / "docker-compose.yml"
STAGE01_COMPOSE = ROOT / "01-ingestion" / "docker-compose.yml"
COMPOSE_FILES = [ROOT_COMPOSE, STAGE00_COMPOSE, STAGE01_COMPOSE]
LOCALSTACK = "localstack"
LOCALSTACK_URL = "http://localstack:4566"
# The endpoint and credentials come from the user's environment, with the local defaults.
AWS_FROM_ENV = {
    "AWS_ENDPOINT_URL": "${AWS_ENDPOINT_URL:-" + LOCALSTACK_URL + "}",
    "AWS_ACCESS_KEY_ID": "${AWS_ACCESS_KEY_ID:-test}",
    "AWS_SECRET_ACCESS_KEY": "${AWS_SECRET_ACCESS_KEY:-test}",
}
# What names the streams, buckets and lease table (stages/common/resources.py).
RESOURCE_NAMES_ENV = ("STREAM_PREFIX", "BUCKET_PREFIX")
# Read by boto3 itself (the credential chain), not by our settings.
AWS_STANDARD_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
}
# LocalStack's own configuration; everything else it gets is for the ready hook.
LOCALSTACK_OWN_ENV = {"SERVICES", "KINESIS_LATENCY", "DEBUG", "PERSISTENCE"}
# Stage 00 is the six services on 8000-8005 (SPEC §2).
STAGE00 = {svc.name for svc in registry.SERVICES if 8000 <= svc.default_port <= 8005}
PYTHON_SERVICES = {svc.name for svc in registry.SERVICES if svc.name != registry.EMULATOR}
# ./test-pipeline.sh inside the root stack: `docker compose run --rm test-pipeline`.
CHECKER = "test-pipeline"
EXPECTED_SERVICES = {
    ROOT_COMPOSE: PYTHON_SERVICES | {LOCALSTACK, CHECKER},
    STAGE00_COMPOSE: STAGE00 | {LOCALSTACK},
    STAGE01_COMPOSE: {"kinesis-consumer"},
}
# "${NAME:-default}": the user's variable, else a default.
SUBSTITUTION = re.compile(r"^\$\{(\w+):-(.*)\}$")
PEER_CALL = re.compile(r"(?:service_client\([^,()]+,\s*|service_url\()\"(\w+)\"")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each ``ports`` entry."""
    result = []
    for mapping in service.get("ports", []):
        address, host, container = str(mapping).split(":")
        result.append((address, int(host), int(container.split("/")[0])))
    return result


def compose_name(registry_name: str) -> str:
    return LOCALSTACK if registry_name == registry.EMULATOR else registry_name


def settings_env() -> set[str]:
    """Every variable config.py reads, plus the host/port variables of registry services whose
    settings come with them (the registry names them before the service is built)."""
    names = {name.upper() for name in Settings.model_fields}
    for svc in registry.SERVICES:
        names |= {svc.port_env, svc.host_setting.upper()}
    return names


def package_source(module: str) -> str:
    package = ROOT / Path(*module.split("."))
    return "\n".join(path.read_text() for path in sorted(package.rglob("*.py")))


def peers_called(module: str) -> set[str]:
    """The services a module's code calls through stages.common.http / Settings.service_url."""
    by_prefix = {svc.host_setting.removesuffix("_host"): svc.name for svc in registry.SERVICES}
    return {by_prefix[prefix] for prefix in PEER_CALL.findall(package_source(module))}


def writes_data_dir(module: str) -> bool:
    return "settings.data_dir" in package_source(module)


def named_volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> volume name, for named volumes (not bind mounts)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if not source.startswith((".", "/")):
            mounts[target] = source
    return mounts


def assert_defaults_agree_with_config(name: str, env: dict[str, str]) -> None:
    """``KEY: ${KEY:-default}`` passes the user's own variable on, with config.py's default."""
    defaults = {key.upper(): field.default for key, field in Settings.model_fields.items()}
    for key, value in env.items():
        match = SUBSTITUTION.match(value)
        if match and defaults.get(key) is not None:
            assert match[1] == key, f"{name}: {key} takes ${{{match[1]}}}"
            assert str(defaults[key]).lower() in {match[2].lower(), match[2] + ".0"}, (
                f"{name}: {key} defaults to {match[2]}, config.py to {defaults[key]}"
            )


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_every_expected_service_and_nothing_else(path: Path) -> None:
    assert set(load(path)["services"]) == EXPECTED_SERVICES[path]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_images_pinned_volumes_declared_healthchecks_everywhere(path: Path) -> None:
    compose = load(path)
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        image = str(svc["image"])
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        check = svc.get("healthcheck", {})
        # A one-off tool (in a profile, never started by `up`) has nothing to wait for.
        has_check = bool(check.get("test")) and not check.get("disable")
        assert has_check or svc.get("profiles"), f"{name}: no health check"
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (path.parent / source).exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_python_services_match_the_registry_and_the_code(path: Path) -> None:
    services = load(path)["services"]
    known_env = settings_env()
    for name, svc in services.items():
        if name in {LOCALSTACK, CHECKER}:
            continue
        entry = registry.BY_NAME[name]
        env = env_of(svc)
        # Every variable is one the code reads; a typo would be silently ignored otherwise.
        unknown = set(env) - known_env - AWS_STANDARD_ENV
        assert not unknown, f"{name}: variables no setting reads: {sorted(unknown)}"
        assert_defaults_agree_with_config(name, env)

        # It runs the registry's module, listens on its port on every interface of the
        # container, publishes it on the host's loopback only, and is probed by the registry.
        command = " ".join(svc["command"])
        assert f"python -m {entry.module}" in command, f"{name}: command {command}"
        assert int(env.get(entry.port_env, entry.default_port)) == entry.default_port, name
        assert env.get(entry.host_setting.upper()) == "0.0.0.0", f"{name}: binds loopback only"
        port = entry.default_port
        assert published_ports(svc) == [("127.0.0.1", port, port)], f"{name}: {svc['ports']}"
        health = " ".join(svc["healthcheck"]["test"])
        assert f"stages.ops.fleet probe {name}" in health, f"{name}: healthcheck {health}"
        assert svc.get("restart") in {"on-failure", "unless-stopped", "always"}, name

        # One image, built from the repository's Dockerfile.
        context = (path.parent / svc["build"]["context"]).resolve()
        assert context == ROOT, f"{name}: build context {context}"
        assert (context / svc["build"].get("dockerfile", "Dockerfile")).is_file(), name

        # Waits for what it needs: the registry's dependencies that this file runs, healthy.
        wanted = {compose_name(dep) for dep in entry.depends_on} & set(services)
        depends = svc.get("depends_on", {})
        assert set(depends) == wanted, f"{name}: depends_on {sorted(depends)} != {sorted(wanted)}"
        for dep, spec in depends.items():
            assert spec["condition"] == "service_healthy", f"{name} -> {dep}"

        # Reaches the peers its code calls by their compose names, on their registry ports.
        for peer in peers_called(entry.module):
            peer_entry = registry.BY_NAME[peer]
            assert peer in services, f"{name} calls {peer}, which this file does not run"
            assert env.get(peer_entry.host_setting.upper()) == peer, f"{name}: address of {peer}"
            assert int(env.get(peer_entry.port_env, peer_entry.default_port)) == (
                peer_entry.default_port
            ), f"{name}: port of {peer}"

        if entry.uses_aws:
            for key, value in AWS_FROM_ENV.items():
                assert env.get(key) == value, f"{name}: {key} is {env.get(key)}, not {value}"
            for key in RESOURCE_NAMES_ENV:
                assert key in env, f"{name}: {key} is not passed on"
        if writes_data_dir(entry.module):
            # Spool, state database, category/consolidated files outlive the container.
            mounts = named_volume_mounts(svc)
            assert env.get("DATA_DIR") in mounts, f"{name}: DATA_DIR is not on a named volume"


@pytest.mark.parametrize("path", [ROOT_COMPOSE, STAGE00_COMPOSE], ids=ids)
def test_localstack_is_pinned_fast_and_provisioned_by_the_ready_hook(path: Path) -> None:
    localstack = load(path)["services"][LOCALSTACK]
    image = localstack["image"]
    assert re.fullmatch(r"localstack/localstack:\d+\.\d+\.\d+", image), image
    env = env_of(localstack)
    assert env["KINESIS_LATENCY"] == "0"
    assert set(env) - LOCALSTACK_OWN_ENV <= settings_env()
    assert_defaults_agree_with_config(LOCALSTACK, env)
    # The ready hook names the resources as the services do.
    assert {*RESOURCE_NAMES_ENV, "LEASE_TABLE"} <= set(env)
    mounts = {
        (path.parent / str(v).split(":")[0]).resolve(): str(v).split(":")[1]
        for v in localstack["volumes"]
        if str(v).startswith(".")
    }
    assert mounts[ROOT / "localstack-init"] == "/etc/localstack/init/ready.d"
    # Healthy only after the hook that creates the resources has finished without error.
    assert "/_localstack/init/ready" in " ".join(localstack["healthcheck"]["test"])
    assert published_ports(localstack) == [("127.0.0.1", 4566, 4566)]


def test_the_consumer_restarts_and_has_time_to_flush() -> None:
    for path in (ROOT_COMPOSE, STAGE01_COMPOSE):
        consumer = load(path)["services"]["kinesis-consumer"]
        assert consumer["restart"] in {"on-failure", "unless-stopped", "always"}
        # The consumer flushes on SIGTERM within its own 30 s shutdown limit.
        assert int(str(consumer["stop_grace_period"]).rstrip("s")) > 30


def test_stage01_compose_runs_the_consumer_against_an_existing_localstack() -> None:
    consumer = load(STAGE01_COMPOSE)["services"]["kinesis-consumer"]
    # Resources are created if the LocalStack was started without the init hook.
    assert "python -m stages.ops.provision &&" in " ".join(consumer["command"])


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [ln.split()[0] for ln in text.splitlines() if ln and not ln[0].isspace()]
    assert re.search(r"^FROM python:3\.11-slim$", text, flags=re.MULTILINE)
    assert "HEALTHCHECK" in instructions
    user = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert user and user[-1] not in {"root", "0"}
    # The runtime stage installs the wheel built in the first stage, never the source tree.
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /dist ." in text
    runtime = text.split("\nFROM ")[-1]
    assert "pip install /tmp/dist/stages-*.whl" in runtime
    assert not re.search(r"^COPY (?!--from)", runtime, flags=re.MULTILINE)
    # The data directory the compose files mount volumes on exists in the image, owned by the
    # user, so a fresh named volume is writable.
    assert "mkdir -p /app/.run/data && chown -R app:app /app/.run" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".run", ".git"} <= set(ignored)


def test_stage01_joins_the_network_of_the_stack_that_runs_localstack() -> None:
    """01-ingestion's consumer reaches `localstack` on the network the other files name."""
    network = load(STAGE01_COMPOSE)["networks"]["default"]
    assert network["external"] is True
    for path in (ROOT_COMPOSE, STAGE00_COMPOSE):
        assert load(path)["networks"]["default"]["name"] == network["name"], ids(path)
    consumer = load(STAGE01_COMPOSE)["services"]["kinesis-consumer"]
    assert env_of(consumer)["AWS_ENDPOINT_URL"] == "${AWS_ENDPOINT_URL:-" + LOCALSTACK_URL + "}"


def test_one_localstack_version_everywhere() -> None:
    images = {
        load(path)["services"][LOCALSTACK]["image"] for path in (ROOT_COMPOSE, STAGE00_COMPOSE)
    }
    assert len(images) == 1
    documented = set(
        re.findall(
            r"localstack/localstack:[\w.]+", (ROOT / "01-ingestion" / "README.md").read_text()
        )
    )
    assert documented == images


def test_the_pipeline_check_runs_inside_the_root_stack() -> None:
    services = load(ROOT_COMPOSE)["services"]
    checker = services[CHECKER]
    assert checker["profiles"] == ["test"]
    assert checker["entrypoint"] == ["python", "-m", "stages.ops.pipeline_check"]
    env = env_of(checker)
    assert not set(env) - settings_env() - AWS_STANDARD_ENV
    assert {key: env.get(key) for key in AWS_FROM_ENV} == AWS_FROM_ENV
    assert set(RESOURCE_NAMES_ENV) <= set(env)
    # It finds every service of the stack by its compose name, on its registry port.
    for name in PYTHON_SERVICES:
        entry = registry.BY_NAME[name]
        assert env.get(entry.host_setting.upper()) == name, name
        assert entry.port_env not in env, name
    # ... once all of them are healthy.
    depends = checker["depends_on"]
    assert set(depends) == PYTHON_SERVICES
    assert {spec["condition"] for spec in depends.values()} == {"service_healthy"}
    # It reads the category files from the Ingestion Interface's own volume, read-only.
    ingestion = services["ingestion-interface"]
    volume = named_volume_mounts(ingestion)[env_of(ingestion)["DATA_DIR"]]
    assert f"{volume}:{env['DATA_DIR']}:ro" in checker["volumes"]


class _Reset:
    """Compose's `!reset` tag: the key's value from the files before is dropped."""


class _OverrideLoader(yaml.SafeLoader):
    pass


_OverrideLoader.add_constructor("!reset", lambda loader, node: _Reset())

OFFLINE_OVERRIDES = {
    ROOT_COMPOSE: ROOT / "ci" / "docker-compose.offline.yml",
    STAGE00_COMPOSE: ROOT / "ci" / "stage00.offline.yml",
    STAGE01_COMPOSE: ROOT / "ci" / "stage01.offline.yml",
}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_the_compose_job_overrides_publish_nothing_and_pull_nothing(path: Path) -> None:
    """ci/compose-smoke.sh runs each file with its override: a service the override forgot
    would publish a host port (and meet a fleet running there) or be pulled from a registry."""
    base = load(path)["services"]
    override = yaml.load(OFFLINE_OVERRIDES[path].read_text(), Loader=_OverrideLoader)["services"]
    assert set(override) == set(base)
    for name, service in base.items():
        if "ports" in service:
            assert isinstance(override[name].get("ports"), _Reset), name
        assert override[name].get("pull_policy") == "never", name
    if LOCALSTACK in base:
        emulator = override[LOCALSTACK]
        # The project image, whichever service of the file builds it.
        assert emulator["image"] == base["state-manager"]["image"]
        assert emulator["command"] == ["python", "-m", "stages.emulator"]
        assert isinstance(emulator["volumes"], _Reset)

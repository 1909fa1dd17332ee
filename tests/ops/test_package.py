"""The package as a user installs it: the wheel built from this tree, in a fresh venv with only
its runtime dependencies, run from a directory that is not the source tree.

Built once per module (a wheel, a venv and pip resolving the runtime dependencies take about a
minute on a 2-core machine); each test then checks one thing a user meets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stages.ops import registry
from tests.ops.support import FleetRun, alive, private_fleet
from tests.support.processes import ROOT

# Test, lint, benchmark and AWS CLI tools: the dev and aws extras, never what a user runs.
NOT_RUNTIME = {
    "pytest",
    "pytest-xdist",
    "ruff",
    "playwright",
    "schemathesis",
    "py-spy",
    "awscli",
    "awscli-local",
    "opentelemetry-sdk",
    # moto[server]'s extras the emulator does not use.
    "cfn-lint",
    "sympy",
    "aws-xray-sdk",
    "graphql-core",
    "openapi-spec-validator",
}


@dataclass
class Installed:
    wheel: Path
    python: Path
    workdir: Path


def _run(args: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        **kwargs,  # type: ignore[arg-type]
    )
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{args} failed:\n{output}"
    return result


def _env_outside_tree(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("package")
    # A copy of what the Dockerfile copies, so the build leaves nothing in the work tree.
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "stages",
        src / "stages",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src], cwd=root)
    (wheel,) = dist.glob("stages-*.whl")
    target = root / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", wheel], cwd=root, env=_env_outside_tree())
    workdir = root / "elsewhere"
    workdir.mkdir()
    return Installed(wheel, python, workdir)


def test_wheel_holds_every_page_template_and_asset(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        packaged = set(wheel.namelist())
    needed = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "stages").rglob("*")
        if path.is_file()
        and path.suffix not in {".py", ".pyc"}
        and path.name != "README.md"
        and "__pycache__" not in path.parts
    }
    assert "stages/dashboard/page.html" in needed
    assert sorted(needed - packaged) == []


def test_every_module_imports_with_runtime_dependencies_only(installed: Installed) -> None:
    script = (
        "import importlib, json, pkgutil, stages\n"
        "failed = {}\n"
        "names = [m.name for m in pkgutil.walk_packages(stages.__path__, 'stages.')]\n"
        "for name in names:\n"
        "    if name.endswith('.__main__'):\n"
        "        continue\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed[name] = repr(exc)\n"
        "print(json.dumps({'count': len(names), 'failed': failed, 'file': stages.__file__}))\n"
    )
    result = _run([installed.python, "-c", script], cwd=installed.workdir, env=_env_outside_tree())
    report = json.loads(result.stdout)
    assert report["failed"] == {}
    assert report["count"] > 50
    # The installed copy, not the source tree.
    assert str(ROOT) not in report["file"]
    assert "site-packages" in report["file"]


def test_runtime_venv_has_no_test_or_benchmark_tools(installed: Installed) -> None:
    names = _distributions(installed.python, installed.workdir)
    assert "stages" in names
    assert sorted(names & NOT_RUNTIME) == []


@pytest.fixture
def installed_fleet(installed: Installed, tmp_path: Path) -> Iterator[FleetRun]:
    run = private_fleet(tmp_path)
    run.env = _env_outside_tree(**run.env)
    yield run
    pids = run.recorded_pids()
    _cli(installed, run, "stop", "--timeout", "10", check=False)
    for pid in pids:
        if alive(pid):
            os.kill(pid, 9)


def _cli(
    installed: Installed, run: FleetRun, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(installed.python), "-m", "stages.ops.fleet", *args],
        cwd=installed.workdir,
        env=run.env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )
    if check:
        assert result.returncode == 0, f"{args}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def test_every_service_starts_from_the_installed_package(
    installed: Installed, installed_fleet: FleetRun
) -> None:
    _cli(installed, installed_fleet, "start")
    for svc in registry.SERVICES:
        url = installed_fleet.url(svc.name) + svc.health_path
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, f"{svc.name}: {response.status_code} {response.text}"
        pid = installed_fleet.pid(svc.name)
        cmdline = " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0"))
        assert str(installed.python) in cmdline, f"{svc.name} runs {cmdline}"
    # The dashboard's page is a package file; served, it is the page and not an error.
    page = httpx.get(installed_fleet.url("dashboard") + "/", timeout=10)
    assert page.status_code == 200
    assert "<html" in page.text.lower()


def _distributions(python: Path, cwd: Path) -> set[str]:
    script = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps(sorted({d.metadata['Name'].lower() for d in m.distributions()})))\n"
    )
    result = _run([python, "-c", script], cwd=cwd)
    return {name.replace("_", "-") for name in json.loads(result.stdout)}


def test_start_sh_installs_the_runtime_only(tmp_path: Path) -> None:
    """What ./start.sh gives a user: a venv that runs every service and holds no dev tool."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("start.sh", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, checkout / name)
    shutil.copytree(
        ROOT / "stages",
        checkout / "stages",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    env = _env_outside_tree(PYTHON=sys.executable)
    _run([checkout / "start.sh", "--install-only"], cwd=checkout, env=env)
    python = checkout / ".venv" / "bin" / "python"
    names = _distributions(python, checkout)
    assert {"stages", "moto", "fastapi"} <= names
    assert sorted(names & NOT_RUNTIME) == []

"""The package's import rules, read from the source with ``ast`` (every import statement, also
those inside functions and ``TYPE_CHECKING`` blocks, and ``importlib.import_module("...")`` calls):

- no module outside ``stages/ops/`` imports ``stages.ops`` (the tools that run the product: no
  service, and nothing services share, depends on them);
- ``stages/common/`` imports nothing of ``stages`` but itself: it is what services share;
- a service package (every directory of ``stages/`` but ``common`` and ``ops``, listed from the
  directory so that a new service is covered the day it is added) imports only itself,
  ``stages.common`` and ``stages.patterns`` (used as a library).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import ROOT

STAGES = ROOT / "stages"
SHARED = "common"
TOOLS = "ops"
# Service packages other services may import: Pattern Generator's shapes are a library too.
LIBRARIES = frozenset({SHARED, "patterns"})


@dataclass(frozen=True)
class Import:
    path: Path  # relative to the directory that holds ``stages/``
    line: int
    module: str  # absolute dotted name, e.g. ``stages.consumer.leases``

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every module of ``stages`` that ``path`` imports, as absolute dotted names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    rel = path.relative_to(root)
    found: list[Import] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # ``from stages import consumer`` imports the package ``stages.consumer``.
            if module == "stages":
                names = [f"stages.{alias.name}" for alias in node.names]
            else:
                names = [module]
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "import_module")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        for name in names:
            if name == "stages" or name.startswith("stages."):
                found.append(Import(rel, node.lineno, name))
    return found


def _top(module: str) -> str | None:
    """The first-level package of ``stages`` a dotted name is in (``stages.x.y`` -> ``x``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violations(root: Path) -> list[str]:
    """What breaks the rules in the ``stages`` package under ``root``, one line each."""
    stages = root / "stages"
    found: list[str] = []
    for path in sorted(stages.rglob("*.py")):
        rel = path.relative_to(stages).parts
        owner = rel[0] if len(rel) > 1 else None  # None: a module at the top of ``stages``
        for imp in imports_of(path, root):
            target = _top(imp.module)
            if target is None or target == owner:
                continue
            if target == TOOLS:
                found.append(f"{imp}: only stages/ops/ may import stages.ops")
            elif owner == SHARED:
                found.append(f"{imp}: stages/common/ may import only stages.common")
            elif owner not in (None, TOOLS) and target not in LIBRARIES:
                found.append(
                    f"{imp}: a service imports only stages.common and stages.patterns "
                    "(move what two services share into stages/common/)"
                )
    return found


def service_packages(root: Path) -> list[str]:
    return sorted(
        p.name
        for p in (root / "stages").iterdir()
        if (p / "__init__.py").is_file() and p.name not in {SHARED, TOOLS}
    )


def test_the_package_keeps_its_import_rules() -> None:
    assert violations(ROOT) == []


def test_every_service_package_is_checked() -> None:
    # The list comes from the directory: the checker must see the services as they are added.
    services = service_packages(ROOT)
    assert {"consumer", "dashboard", "emulator", "ingestion", "orchestrator"} <= set(services)
    assert SHARED not in services and TOOLS not in services


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        {
            "stages/__init__.py": "",
            "stages/common/__init__.py": "",
            "stages/common/config.py": "",
            "stages/ops/__init__.py": "",
            "stages/ops/fleet.py": "from stages.common import config\nimport stages.consumer\n",
            "stages/patterns/__init__.py": "",
            "stages/patterns/shapes.py": "",
            "stages/consumer/__init__.py": "",
            "stages/consumer/leases.py": "",
            "stages/newservice/__init__.py": "",
            "stages/newservice/app.py": (
                "from stages.common.config import x\n"
                "from stages.patterns.shapes import y\n"
                "from stages.newservice import app\n"
                "from . import app as again\n"
            ),
        },
    )
    return tmp_path


def test_a_clean_package_passes(package: Path) -> None:
    assert violations(package) == []


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        (
            "stages/newservice/store.py",
            "from stages.consumer.leases import Lease\n",
            "stages/newservice/store.py:1 imports stages.consumer.leases: a service imports only",
        ),
        (
            "stages/newservice/store.py",
            "import stages.consumer.leases\n",
            "stages/newservice/store.py:1 imports stages.consumer.leases: a service",
        ),
        (
            "stages/newservice/store.py",
            "from stages import consumer\n",
            "stages/newservice/store.py:1 imports stages.consumer: a service",
        ),
        (
            "stages/newservice/store.py",
            "def later():\n    from ..consumer import leases\n",
            "stages/newservice/store.py:2 imports stages.consumer: a service",
        ),
        (
            "stages/newservice/store.py",
            "import importlib\nimportlib.import_module('stages.consumer.leases')\n",
            "stages/newservice/store.py:2 imports stages.consumer.leases: a service",
        ),
        (
            "stages/common/hosts.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from stages.ops.registry import SERVICES\n",
            "stages/common/hosts.py:3 imports stages.ops.registry: only stages/ops/ may import",
        ),
        (
            "stages/common/hosts.py",
            "from stages.consumer import leases\n",
            "stages/common/hosts.py:1 imports stages.consumer: stages/common/ may import only",
        ),
        (
            "stages/cli.py",
            "from stages.ops import fleet\n",
            "stages/cli.py:1 imports stages.ops: only stages/ops/ may import stages.ops",
        ),
    ],
)
def test_each_kind_of_import_is_caught(
    package: Path, where: str, source: str, expected: str
) -> None:
    _write(package, {where: source})
    found = violations(package)
    assert found, f"{source!r} was not caught"
    assert found[0].startswith(expected), found

"""A file name means one thing across the package: every ``metrics.py`` is a service's Prometheus
metrics, and code that only measures lives in ``benchmarks/``, not in ``stages/``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.processes import ROOT

STAGES = ROOT / "stages"


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_every_metrics_module_is_prometheus() -> None:
    found = sorted(STAGES.rglob("metrics.py"))
    assert len(found) >= 5  # one per service that counts anything
    others = [p.relative_to(ROOT) for p in found if "prometheus_client" not in _imported_modules(p)]
    assert others == [], f"metrics.py that are not Prometheus metrics: {others}"


def test_no_benchmark_module_inside_the_package() -> None:
    found = [p.relative_to(ROOT) for p in STAGES.rglob("*.py") if p.stem.startswith("bench")]
    assert found == [], f"benchmark code belongs in benchmarks/: {found}"

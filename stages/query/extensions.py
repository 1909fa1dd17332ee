"""DuckDB's Iceberg and S3 extensions, loaded from the PyPI packages that ship them.

DuckDB would otherwise download an extension the first time a query needs it; the query command
must work with no network beyond the AWS endpoint, so autoloading and autoinstalling are off and
each extension is loaded from its ``duckdb_extension_<name>`` package's file. Each package is
built for one DuckDB release (its ``Requires-Dist: duckdb==X``), which is why ``pyproject.toml``
pins DuckDB to that release.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

# Load order matters: iceberg reads its manifests with avro and its files through httpfs.
EXTENSIONS = ("httpfs", "avro", "iceberg")

OFFLINE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class ExtensionMissing(RuntimeError):
    """An extension package is not installed, or not built for this DuckDB."""


def extension_path(name: str) -> Path:
    """The ``.duckdb_extension`` file the ``duckdb_extension_<name>`` package ships for this
    DuckDB version."""
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionMissing(f"the {package.replace('_', '-')} package is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        built = sorted(p.parent.name for p in root.glob("extensions/*/*.duckdb_extension"))
        raise ExtensionMissing(
            f"{package.replace('_', '-')} has no build for DuckDB {duckdb.__version__} "
            f"(it has {', '.join(built) or 'none'})"
        )
    return path


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with httpfs, avro and iceberg loaded from their packages."""
    con = duckdb.connect(config=OFFLINE_CONFIG)
    for name in EXTENSIONS:
        con.load_extension(str(extension_path(name)))
    return con

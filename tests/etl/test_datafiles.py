"""The fold's data files as every reader sees them: the typed dictionary columns go to Parquet as
they are, and pyiceberg scans, DuckDB (``python -m stages.query``) and compaction read them back
in the tables' plain string types, value for value, with the statistics and source keys of the
rows each file really holds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.types import StringType

from stages.common.config import Settings
from stages.etl.app import build_etl
from stages.etl.compaction import files_per_partition
from stages.etl.datafiles import _only_used
from stages.etl.tables import COMPACTED_PREFIX, in_write_order, open_catalog
from tests.etl.support import RawLake, exactly_once, records
from tests.support.processes import base_env

# The generator's fields as the tables hold them, per table: what each row must read back as.
CHECKED = {
    "logs": ("service", "kind", "host", "level", "log_type", "category", "message"),
    "metrics": ("service", "kind", "host", "metric_name", "unit"),
    "apm": ("service", "kind", "host", "name", "status"),
}


def _sent(sent: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    fields = CHECKED[{"log": "logs", "metric": "metrics", "apm": "apm"}[kind]]
    return {r["event_id"]: {f: r.get(f) for f in fields} for r in sent if r["kind"] == kind}


def _read(rows: pa.Table, name: str) -> dict[str, dict[str, Any]]:
    out = {}
    for row in rows.select(["event_id", *CHECKED[name]]).to_pylist():
        out[row.pop("event_id")] = row
    return out


def _folded(settings: Settings) -> tuple[list[dict[str, Any]], Any]:
    """Objects of each (kind, service) of two hours folded by the service's ETL in one fold."""
    raw = RawLake(settings)
    sent = records(1200, 21, "2026-11-27T06:40:00Z", spread_seconds=1800)
    raw.put(sent, per_object=150)
    etl = build_etl(settings)
    etl.tick()
    assert etl.last_error is None, etl.last_error
    ok, message = exactly_once(raw, settings)
    assert ok, message
    return sent, etl


def test_fold_files_read_back_as_plain_strings_with_every_value(
    lake_settings: Settings,
) -> None:
    settings = lake_settings.model_copy(update={"etl_full_listing_seconds": 0})
    sent, etl = _folded(settings)
    catalog = open_catalog(settings, name="reader")
    for kind, name in (("log", "logs"), ("metric", "metrics"), ("apm", "apm")):
        table = catalog.load_table(f"telemetry.{name}")
        rows = table.scan().to_arrow()
        # pyiceberg's read types: the table's plain string columns, no dictionary.
        strings = {f.name for f in table.schema().fields if isinstance(f.field_type, StringType)}
        assert {"service", "level", "source_key"} & strings
        for field in rows.schema:
            assert not pa.types.is_dictionary(field.type), (name, field)
            if field.name in strings:
                assert pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
        assert _read(rows, name) == _sent(sent, kind)

        files = table.inspect.files()
        assert files.num_rows > 1
        for path, partition, lower, upper in zip(
            files.column("file_path").to_pylist(),
            files.column("partition").to_pylist(),
            files.column("lower_bounds").to_pylist(),
            files.column("upper_bounds").to_pylist(),
            strict=True,
        ):
            with table.io.new_input(path).open() as stream:
                parquet = pq.ParquetFile(stream)
                metadata = parquet.metadata
                # No Arrow schema in the file: any Parquet reader gets the logical types.
                assert b"ARROW:schema" not in (metadata.metadata or {})
                schema = parquet.schema_arrow
                content = parquet.read()
            assert pa.types.is_string(schema.field("service").type)
            column = {metadata.schema.column(i).name: i for i in range(metadata.num_columns)}
            chunk = metadata.row_group(0).column(column["service"])
            assert "RLE_DICTIONARY" in chunk.encodings
            # The statistics are those of the file's rows (one service), not of the fold's
            # dictionary (every service of the fold).
            # Every row of a file is of the file's partition.
            assert set(
                zip(*(content.column(c).to_pylist() for c in ("service", "dt", "hr")), strict=True)
            ) == {(partition["service"], partition["dt"], partition["hr"])}
            # The statistics are those of the file's rows (one service), not of the fold's
            # dictionary (every service of the fold); pyiceberg keeps 16 characters of a string.
            service = partition["service"]
            field_id = table.schema().find_field("service").field_id
            low, high = dict(lower)[field_id].decode(), dict(upper)[field_id].decode()
            assert low == service[:16]
            assert (
                high == service
                if len(service) <= 16
                else service[:16] < high <= service[:15] + chr(ord(service[15]) + 1)
            )
            # Each file's source keys are the objects its rows came from, and the keys the
            # committer remembers for it (what a restart's checkpoint holds) are the same.
            keys = set(content.column("source_key").to_pylist())
            assert etl.committer.file_keys[kind][path] == keys
            assert metadata.row_group(0).column(column["source_key"]).statistics.has_min_max


def test_duckdb_and_compaction_read_the_fold_files(lake_settings: Settings, tmp_path: Path) -> None:
    settings = lake_settings.model_copy(update={"etl_full_listing_seconds": 0})
    sent, etl = _folded(settings)
    logs = [r for r in sent if r["kind"] == "log"]

    home = tmp_path / "home"
    home.mkdir()
    sql = (
        "SELECT service, level, log_type, count(*) AS n FROM telemetry.logs "
        "GROUP BY service, level, log_type ORDER BY service, level, log_type"
    )
    done = subprocess.run(
        [sys.executable, "-m", "stages.query", "--format", "json", sql],
        env=base_env(settings.aws_endpoint_url or "", HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    got = {(r["service"], r["level"], r["log_type"]): r["n"] for r in json.loads(done.stdout)}
    assert got == dict(Counter((r["service"], r["level"], r["log_type"]) for r in logs))

    # Compaction of each hour reads the fold's files (one per service and hour) and writes one
    # file per service and hour with every row as it was.
    table = etl.committer.reload("log")
    before = table.scan().to_arrow()
    parts = files_per_partition(table)
    hours = sorted({(dt, hr) for _, dt, hr in parts})
    assert len(hours) == 2
    for dt, hr in hours:
        services = sorted(s for s, d, h in parts if (d, h) == (dt, hr))
        etl.maintenance.compact_hour("log", dt, hr, services)
    table = etl.committer.reload("log")
    after = files_per_partition(table)
    assert set(after) == set(parts)
    assert all(
        len(paths) == 1 and paths[0].rpartition("/")[2].startswith(COMPACTED_PREFIX)
        for paths in after.values()
    )
    compacted = table.scan().to_arrow()
    assert compacted.schema == before.schema
    key = [("event_id", "ascending")]
    assert compacted.sort_by(key).equals(before.sort_by(key))
    assert _read(compacted, "logs") == _sent(sent, "log")


def test_a_file_dictionary_keeps_only_the_values_its_rows_use() -> None:
    column = pa.DictionaryArray.from_arrays(
        pa.array([3, None, 1, 3, 1], pa.int32()), pa.array(["a", "b", "c", "d", "e"])
    )
    only = _only_used(column)
    assert only.dictionary.to_pylist() == ["b", "d"]
    assert only.type == column.type
    assert only.to_pylist() == column.to_pylist() == ["d", None, "b", "d", "b"]
    # Already minimal: the same array.
    assert _only_used(only) is only


def test_dictionary_columns_sort_by_their_values_across_chunks() -> None:
    # Two chunks whose dictionaries hold the same values in other orders, and a null.
    first = pa.table(
        {
            "service": pa.DictionaryArray.from_arrays(
                pa.array([0, 1, 0], pa.int32()), pa.array(["zeta", "alpha"])
            ),
            "log_type": pa.array(["b", "a", "a"]),
        }
    )
    second = pa.table(
        {
            "service": pa.DictionaryArray.from_arrays(
                pa.array([1, None, 0], pa.int32()), pa.array(["alpha", "mid"])
            ),
            "log_type": pa.array(["c", "c", "a"]),
        }
    )
    rows = pa.concat_tables([first, second])
    for name in ("dt", "hr", "host", "timestamp"):
        rows = rows.append_column(name, pa.nulls(rows.num_rows, pa.int32()))
    ordered = in_write_order("log", rows)
    got = list(
        zip(
            ordered.column("service").to_pylist(),
            ordered.column("log_type").to_pylist(),
            strict=True,
        )
    )
    assert got == [
        ("alpha", "a"),
        ("alpha", "a"),
        ("mid", "c"),
        ("zeta", "a"),
        ("zeta", "b"),
        (None, "c"),
    ]

"""Compaction's own files on a real emulator: one file per closed hour partition in the tables'
Parquet layout (field ids, per-column encodings, write order), the same rows before and after,
readable by pyiceberg and by DuckDB (the query command's engine), and left alone once done; a
compaction whose commit is refused (the table moved) is redone without losing the new rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY

from stages.common.config import Settings
from stages.etl import compaction
from stages.etl.app import build_etl
from stages.etl.tables import COMPACTED_PREFIX, WRITE_ORDER, open_catalog
from stages.query import engine
from tests.etl.support import RawLake, exactly_once, partitions_files, records
from tests.support.tables import plain


def _rows(table) -> list[dict]:
    rows = table.scan().to_arrow()
    rows = rows.take(pc.sort_indices(rows, [("event_id", "ascending")]))
    return [
        dict(zip(rows.column_names, values, strict=True))
        for values in zip(*(plain(rows[name]) for name in rows.column_names), strict=True)
    ]


def test_compaction_writes_the_tables_parquet_layout_and_keeps_every_row(
    lake_settings: Settings,
) -> None:
    settings = lake_settings.model_copy(
        update={"etl_full_listing_seconds": 0, "etl_allowed_lateness_seconds": 0}
    )
    raw = RawLake(settings)
    etl = build_etl(settings)
    raw.put(records(400, 21, "2026-11-27T06:05:00Z"))
    etl.tick()
    assert etl.last_error is None
    logs = open_catalog(settings, name="check").load_table("telemetry.logs")
    before = _rows(logs)
    appended = logs.inspect.files()
    partitions = appended.num_rows
    assert partitions >= 5  # one file per service partition the fold touched

    # Each closed hour partition, even of one file the fold wrote, becomes one compaction file.
    assert etl.maintenance.compact("log", datetime.now(UTC)) == partitions
    logs = logs.refresh()
    files = logs.inspect.files()
    paths = files.column("file_path").to_pylist()
    assert len(paths) == partitions
    assert all(p.rpartition("/")[2].startswith(COMPACTED_PREFIX) for p in paths), paths

    def partition_set(rows) -> set[tuple]:
        return {tuple(p.values()) for p in rows.column("partition").to_pylist()}

    assert partition_set(files) == partition_set(appended)
    assert _rows(logs) == before
    ok, message = exactly_once(raw, settings)
    assert ok, message

    # The file: Iceberg field ids in its Parquet schema, the encodings of the layout, rows in the
    # table's write order.
    counts = files.column("record_count").to_pylist()
    biggest = paths[counts.index(max(counts))]
    with logs.io.new_input(biggest).open() as stream:
        parquet = pq.ParquetFile(stream)
        ids = {
            field.name: int(field.metadata[b"PARQUET:field_id"]) for field in parquet.schema_arrow
        }
        assert ids == {field.name: field.field_id for field in logs.schema().fields}
        chunks = {
            parquet.metadata.row_group(0).column(i).path_in_schema: parquet.metadata.row_group(
                0
            ).column(i)
            for i in range(parquet.metadata.num_columns)
        }
        assert "DELTA_LENGTH_BYTE_ARRAY" in chunks["event_id"].encodings
        assert "DELTA_BINARY_PACKED" in chunks["timestamp"].encodings
        assert "RLE_DICTIONARY" in chunks["log_type"].encodings
        assert "RLE_DICTIONARY" in chunks["source_key"].encodings
        assert not chunks["event_id"].has_dictionary_page
        assert {c.compression for c in chunks.values()} == {"ZSTD"}
        rows = parquet.read()
    order = [name for name in WRITE_ORDER["log"] if name not in ("service", "dt", "hr")]
    keys = list(zip(*(plain(rows[name]) for name in order), strict=True))
    assert keys == sorted(keys)

    # The query command's engine reads the compacted table: every row once.
    con, _ = engine.connect(settings)
    result = engine.run(con, "SELECT count(*), count(DISTINCT event_id) FROM telemetry.logs")
    assert result.rows == [(len(before), len(before))]

    # Done is done: a second pass rewrites nothing.
    assert etl.maintenance.compact("log", datetime.now(UTC)) == 0
    assert logs.refresh().inspect.files().column("file_path").to_pylist() == paths


def test_a_compaction_refused_by_a_concurrent_commit_is_redone_without_losing_its_rows(
    lake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = lake_settings.model_copy(
        update={"etl_full_listing_seconds": 0, "etl_allowed_lateness_seconds": 0}
    )
    raw = RawLake(settings)
    etl = build_etl(settings)
    raw.put(records(200, 22, "2026-11-27T06:05:00Z"))
    etl.tick()
    assert etl.last_error is None

    # While compaction writes its first file, another commit (a late object for the same hour,
    # folded with the same lease) lands on the table: compaction's commit is refused.
    other = build_etl(settings)
    other.lease = etl.lease
    other.committer.lease = etl.lease
    written = compaction.write_data_file
    late: list[str] = []

    def write_then_commit_elsewhere(*args: object, **kwargs: object) -> object:
        if not late:
            late.extend(raw.put(records(60, 23, "2026-11-27T06:05:00Z")))
            other.tick()
            assert other.last_error is None
        return written(*args, **kwargs)

    monkeypatch.setattr(compaction, "write_data_file", write_then_commit_elsewhere)
    conflicts = _conflicts()
    etl.maintenance.compact("log", datetime.now(UTC))

    assert late and _conflicts() == conflicts + 1
    # Redone from a fresh load: every partition is one compaction file, the late rows included.
    paths = partitions_files(settings, "logs")
    assert set(paths.values()) == {1}, paths
    ok, message = exactly_once(raw, settings)
    assert ok, message


def _conflicts() -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == "etl_commit_conflicts_total" and sample.labels.get("table") == "logs"
    )

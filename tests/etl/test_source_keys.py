"""What a starting ETL knows of the tables without scanning them: the checkpoint of source keys
per data file, checked against a full scan of every table's ``source_key`` column, also when
the checkpoint is stale, missing or damaged; and the data files the fold writes itself."""

from __future__ import annotations

import time
from collections import Counter
from datetime import date
from typing import Any

import prometheus_client
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from stages.common import aws
from stages.common.config import Settings
from stages.etl import features
from stages.etl.app import build_etl, build_service
from stages.etl.committer import Committer, checkpoint_location
from stages.etl.tables import TABLE_NAMES, open_catalog
from tests.etl.support import RawLake, exactly_once, records


def _settings(base: Settings) -> Settings:
    return base.model_copy(
        update={"etl_full_listing_seconds": 0, "etl_source_keys_checkpoint_seconds": 0}
    )


def _files_read() -> float:
    value = prometheus_client.REGISTRY.get_sample_value("etl_source_key_files_read_total")
    return value or 0.0


def _scanned(settings: Settings) -> dict[str, set[str]]:
    """Every table's source keys by the full scan the checkpoint replaces."""
    committer = build_etl(settings).committer
    committer.open()
    return {kind: Committer.source_keys(committer.reload(kind)) for kind in TABLE_NAMES}


def _started(settings: Settings) -> Committer:
    committer = build_etl(settings).committer
    committer.open()
    committer.load_held()
    return committer


def test_a_start_reads_the_checkpoint_and_only_the_files_it_does_not_list(
    lake_settings: Settings,
) -> None:
    settings = _settings(lake_settings)
    raw = RawLake(settings)
    etl = build_etl(settings)
    raw.put(records(150, 11, "2026-11-27T06:05:00Z"))
    raw.put_object(
        "log",
        "auth-service",
        "year=2026/month=11/day=27/hour=06",
        b'{"kind":"log","timestamp":\n',  # one quarantined line: the quarantine table too
    )
    etl.tick()  # folds and, with a 0 s interval, writes the checkpoint
    assert etl.last_error is None
    ok, message = exactly_once(raw, settings)
    assert ok, message
    truth = _scanned(settings)
    assert len(truth["log"]) > 1 and truth["quarantine"], truth

    before = _files_read()
    started = _started(settings)
    assert started.held == truth
    assert _files_read() == before  # every file was in the checkpoint

    # A stale checkpoint: a second fold's files are not in it until the next one is written.
    saved = {kind: dict(keys) for kind, keys in started.file_keys.items()}
    raw.put(records(90, 12, "2026-11-27T07:05:00Z"))
    etl.settings = etl.settings.model_copy(update={"etl_source_keys_checkpoint_seconds": 3600})
    etl.tick()
    assert etl.last_error is None
    truth = _scanned(settings)
    catalog = open_catalog(settings, name="checker")
    new_files = sum(
        catalog.load_table(f"telemetry.{name}").inspect.files().num_rows - len(saved[kind])
        for kind, name in TABLE_NAMES.items()
    )
    before = _files_read()
    started = _started(settings)
    assert started.held == truth
    assert _files_read() - before == new_files and new_files > 0  # the new files only


def test_a_missing_or_damaged_checkpoint_falls_back_to_reading_every_file(
    lake_settings: Settings,
) -> None:
    settings = _settings(lake_settings)
    raw = RawLake(settings)
    etl = build_etl(settings)
    raw.put(records(80, 21, "2026-11-27T06:05:00Z"))
    etl.tick()
    truth = _scanned(settings)
    s3 = aws.client("s3", settings)
    table = etl.committer.tables["log"]
    location = checkpoint_location("log", table)
    bucket, key = location.removeprefix("s3://").split("/", 1)
    assert key.startswith("_etl-state/"), location  # outside every table's location

    s3.put_object(Bucket=bucket, Key=key, Body=b"not parquet")
    assert _started(settings).held == truth
    s3.delete_object(Bucket=bucket, Key=key)
    assert _started(settings).held == truth


def test_a_fold_writes_one_file_per_partition_with_the_tables_writer_settings(
    lake_settings: Settings,
) -> None:
    settings = _settings(lake_settings)
    raw = RawLake(settings)
    etl = build_etl(settings)
    batch = records(200, 31, "2026-11-27T06:05:00Z", spread_seconds=5400)
    raw.put(batch)
    etl.tick()
    assert etl.last_error is None
    table = open_catalog(settings, name="checker").load_table("telemetry.logs")
    files = table.inspect.files()
    parts = Counter((p["service"], p["dt"], p["hr"]) for p in files.column("partition").to_pylist())
    expected = Counter(
        (r["service"], int(r["timestamp"][11:13])) for r in batch if r["kind"] == "log"
    )
    # one file per (service, hour) partition, holding exactly that partition's records
    assert set(parts.values()) == {1}
    assert {(s, h) for s, _, h in parts} == set(expected)
    counts = dict(
        zip(
            [(p["service"], p["hr"]) for p in files.column("partition").to_pylist()],
            files.column("record_count").to_pylist(),
            strict=True,
        )
    )
    assert counts == dict(expected)
    codec = table.properties["write.parquet.compression-codec"].upper()
    for path in files.column("file_path").to_pylist():
        with table.io.new_input(path).open() as stream:
            meta = pq.ParquetFile(stream).metadata
        column = meta.row_group(0).column(0)
        assert column.compression == codec
        # the Iceberg field ids are in the file, as pyiceberg's own writer puts them
        assert meta.schema.to_arrow_schema().field("event_id").metadata[b"PARQUET:field_id"]


def _count_curated_file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the curated data files the features step reads back from S3, as it reads
    them."""
    reads: list[str] = []
    original = features._read_file

    def counted(reader: Any, task: Any) -> pa.Table:
        reads.append(task.file.file_path)
        return original(reader, task)

    monkeypatch.setattr(features, "_read_file", counted)
    return reads


def test_the_features_step_takes_the_folds_rows_instead_of_reading_its_files(
    lake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(lake_settings)
    raw = RawLake(settings)
    etl = build_etl(settings)
    batch = records(150, 41, "2026-11-27T06:05:00Z", spread_seconds=3000)
    raw.put(batch)
    reads = _count_curated_file_reads(monkeypatch)
    etl.tick()
    assert etl.last_error is None
    assert reads == []  # every curated file of the fold came from the fold itself

    # What the step wrote is what a scan of the curated tables computes (the hour is long past
    # its watermark, so every bucket is written).
    catalog = open_catalog(settings, name="checker")
    written = catalog.load_table(features.FEATURES_TABLE).scan().to_arrow()
    services = {r["service"] for r in batch}
    assert set(written.column("service").to_pylist()) == services
    for service in services:
        partition = features.Partition(service, date(2026, 11, 27), 6)
        expected = features.compute_partition(catalog, partition, settings.features_bucket_seconds)
        got = written.filter(pc.equal(written.column("service"), service))
        got = got.select(features.ARROW_SCHEMA.names).cast(features.ARROW_SCHEMA)
        assert got.sort_by(features.SORT_KEYS).equals(
            expected.select(features.ARROW_SCHEMA.names)
            .cast(features.ARROW_SCHEMA)
            .sort_by(features.SORT_KEYS)
        ), service


def test_the_features_thread_takes_the_folds_rows_too(
    lake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the service runs it: the rebuilds on the features thread, the fold handing over.
    settings = _settings(lake_settings)
    raw = RawLake(settings)
    etl, step = build_service(settings)
    batch = records(150, 43, "2026-11-27T06:05:00Z", spread_seconds=3000)
    raw.put(batch)
    reads = _count_curated_file_reads(monkeypatch)
    step.start()
    try:
        etl.tick()
        assert etl.last_error is None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = step.status()
            if status["last_write"] is not None and not status["pending_partitions"]:
                break
            time.sleep(0.2)
    finally:
        step.stop()
    assert step.status()["last_error"] is None
    written = open_catalog(settings, name="checker").load_table(features.FEATURES_TABLE)
    assert set(written.scan().to_arrow().column("service").to_pylist()) == {
        r["service"] for r in batch
    }
    assert reads == []  # primed on the thread with the fold's rows, not read back

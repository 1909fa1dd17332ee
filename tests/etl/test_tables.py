"""Typed batches into real Iceberg tables in the emulator's Glue catalog and S3, and back."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, EqualTo

from stages.common import aws
from stages.common.config import Settings
from stages.etl.tables import (
    NAMESPACE,
    PROCESSED_BUCKET,
    WRITE_ORDER,
    ensure_tables,
    in_write_order,
    open_catalog,
)
from stages.etl.typing import KINDS, type_jsonl
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import SynthesizeRequest


def _records(count: int, seed: int, timestamp: str | None = None) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"count": count, "seed": seed, "spread_seconds": 7200}
    if timestamp:
        body["timestamp"] = timestamp
    return synthesize(SynthesizeRequest.model_validate(body), EntityPool()).records


def _plain(table: pa.Table) -> list[dict[str, Any]]:
    """Rows in event_id order, with dictionary columns read as their values; without the
    ``source_key`` lineage column, which only the ETL service fills (these rows come straight
    from typing)."""
    if "source_key" in table.column_names:
        assert table.column("source_key").null_count == table.num_rows
        table = table.drop_columns(["source_key"])
    return sorted(table.to_pylist(), key=lambda row: row["event_id"])


def test_tables_are_created_once_in_glue_with_s3_locations(settings: Settings) -> None:
    catalog = open_catalog(settings)
    first = ensure_tables(catalog)
    again = ensure_tables(open_catalog(settings, name="other"))
    assert set(first) == {*KINDS, "quarantine"}
    assert {k: t.metadata.table_uuid for k, t in first.items()} == {
        k: t.metadata.table_uuid for k, t in again.items()
    }
    glue = aws.client("glue", settings)
    names = {t["Name"] for t in glue.get_tables(DatabaseName=NAMESPACE)["TableList"]}
    assert names == {"logs", "metrics", "apm", "quarantine"}
    for kind, table in first.items():
        assert table.location().startswith(f"s3://{PROCESSED_BUCKET}/{NAMESPACE}/")
        assert [f.name for f in table.spec().fields] == ["service", "dt", "hr"], kind
        # pyiceberg's Parquet writer takes its codec, level and dictionary limit from these.
        assert table.properties["write.parquet.compression-codec"] == "zstd"
        assert table.properties["write.parquet.compression-level"] == "1"
        assert table.properties["write.parquet.dict-size-bytes"] == "16384"


def test_round_trip_and_idempotent_partition_overwrite(settings: Settings) -> None:
    tables = ensure_tables(open_catalog(settings))
    typed = type_jsonl(
        b"\n".join(orjson.dumps(r) for r in _records(1500, 11, "2026-03-01T09:30:00Z"))
    )
    for kind in KINDS:
        tables[kind].append(typed.tables[kind])

    catalog = open_catalog(settings, name="reader")
    for kind in KINDS:
        back = catalog.load_table(tables[kind].name()).scan().to_arrow()
        assert back.num_rows == typed.tables[kind].num_rows
        assert _plain(back) == _plain(typed.tables[kind])

    # Data files are written per partition, under Hive-style service=/dt=/hr= paths in S3.
    logs = catalog.load_table(tables["log"].name())
    paths = logs.inspect.files().column("file_path").to_pylist()
    assert paths and all(
        p.startswith(f"s3://{PROCESSED_BUCKET}/{NAMESPACE}/logs/data/") for p in paths
    )
    partitions = {
        (s, d, h)
        for s, d, h in zip(
            *(typed.tables["log"].column(c).to_pylist() for c in ("service", "dt", "hr")),
            strict=True,
        )
    }
    assert len(paths) == len(partitions)
    assert all("/service=" in p and "/dt=" in p and "/hr=" in p for p in paths)

    # Rebuild one (service, dt, hr) twice from the same rows: the table is unchanged.
    service, dt, hr = sorted(partitions)[0]
    selector = And(EqualTo("service", service), EqualTo("dt", dt.isoformat()), EqualTo("hr", hr))
    mask = pc.and_(
        pc.and_(
            pc.equal(pc.cast(typed.tables["log"]["service"], pa.string()), service),
            pc.equal(typed.tables["log"]["dt"], pa.scalar(dt, pa.date32())),
        ),
        pc.equal(typed.tables["log"]["hr"], pa.scalar(hr, pa.int32())),
    )
    one_partition = typed.tables["log"].filter(mask)
    assert 0 < one_partition.num_rows < typed.tables["log"].num_rows
    for _ in range(2):
        logs = catalog.load_table(tables["log"].name())
        logs.overwrite(one_partition, overwrite_filter=selector)
    back = catalog.load_table(tables["log"].name()).scan().to_arrow()
    assert back.num_rows == typed.tables["log"].num_rows
    assert _plain(back) == _plain(typed.tables["log"])
    assert isinstance(dt, date)


def test_rows_are_put_in_write_order_without_losing_any() -> None:
    typed = type_jsonl(b"\n".join(orjson.dumps(r) for r in _records(3000, 13)))
    for kind in KINDS:
        table = typed.tables[kind]
        ordered = in_write_order(kind, table)
        assert ordered.schema == table.schema
        assert _plain(ordered) == _plain(table)
        keys = [
            tuple(row[name] for name in WRITE_ORDER[kind])
            for row in ordered.select(list(WRITE_ORDER[kind])).to_pylist()
        ]
        assert keys == sorted(keys, key=lambda k: tuple((v is None, v) for v in k))
        # Dictionary columns sort by their values: the services come in alphabetical order.
        services = ordered.column("service").to_pylist()
        assert services == sorted(services)

"""Curated Iceberg tables with known contents, for the tests of what reads them.

The rows are typed exactly as the ETL types them (Stage 00's generator -> JSONL ->
``stages.etl.typing.type_jsonl``) and committed with pyiceberg's append, so a reader is tested
against the real layout: Glue catalog, metadata in S3, Parquet files per (service, dt, hr).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
from pyiceberg.table import Table

from stages.common.config import Settings
from stages.etl.tables import ensure_tables, open_catalog
from stages.etl.typing import KINDS, Typed, type_jsonl
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import SynthesizeRequest


def synthetic_records(count: int, seed: int, start: str, spread_seconds: float) -> list[dict]:
    body: dict[str, Any] = {
        "count": count,
        "seed": seed,
        "timestamp": start,
        "spread_seconds": spread_seconds,
        "anomalous_share": 0.05,
    }
    return synthesize(SynthesizeRequest.model_validate(body), EntityPool()).records


@dataclass
class FilledLake:
    tables: dict[str, Table]
    typed: Typed


def fill_tables(
    settings: Settings,
    count: int = 2000,
    seed: int = 7,
    start: str = "2026-03-01T09:30:00Z",
    spread_seconds: float = 7200,
    bad_lines: tuple[bytes, ...] = (),
) -> FilledLake:
    """Create the tables and append ``count`` synthetic records (plus ``bad_lines``, which
    the typing step quarantines) in one commit per table."""
    records = synthetic_records(count, seed, start, spread_seconds)
    raw = b"\n".join([*(orjson.dumps(r) for r in records), *bad_lines])
    typed = type_jsonl(raw, source_key="tests/raw.jsonl")
    tables = ensure_tables(open_catalog(settings))
    for kind in KINDS:
        tables[kind].append(typed.tables[kind])
    if typed.quarantine.num_rows:
        tables["quarantine"].append(typed.quarantine)
    return FilledLake(tables, typed)


def plain(column: pa.ChunkedArray) -> list[Any]:
    """A column's values, dictionary-encoded or not."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.to_pylist()

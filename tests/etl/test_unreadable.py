"""A raw object whose body cannot be read as lines (a ``.jsonl.gz`` key that is not gzip, a gzip
stream cut short) is quarantined as one row naming it and counted; the objects listed with it
are folded in the same fold, and a second fold neither reads it into the tables nor stops."""

from __future__ import annotations

import gzip

import prometheus_client
import pyarrow.compute as pc

from stages.common import aws
from stages.common.config import Settings
from stages.etl.app import build_etl
from stages.etl.tables import open_catalog
from tests.etl.support import RawLake, exactly_once, records

HOUR = "year=2026/month=11/day=27/hour=06"


def _unreadable_count(bucket: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "etl_raw_objects_unreadable_total", {"bucket": bucket}
    )
    return value or 0.0


def _replace_body(raw: RawLake, key: str, new_key: str, body: bytes) -> None:
    s3 = aws.client("s3", raw.settings)
    s3.delete_object(Bucket="md-raw-logs", Key=key)
    s3.put_object(Bucket="md-raw-logs", Key=new_key, Body=body)


def test_an_unreadable_object_is_quarantined_and_the_fold_goes_on(
    lake_settings: Settings,
) -> None:
    settings = lake_settings.model_copy(update={"etl_full_listing_seconds": 0})
    raw = RawLake(settings)
    raw.put(records(200, 21, "2026-11-27T06:05:00Z"))
    # Two broken objects in the logs bucket, written beside the good ones.
    placeholder = raw.put_object("log", "auth-service", HOUR, b"")
    not_gzip = placeholder.replace(".jsonl", ".jsonl.gz")
    _replace_body(raw, placeholder, not_gzip, b'{"plain": "text"}\n')
    placeholder = raw.put_object("log", "payment-service", HOUR, b"")
    truncated = placeholder.replace(".jsonl", ".jsonl.gz")
    whole = gzip.compress(b'{"kind": "log"}\n' * 500)
    _replace_body(raw, placeholder, truncated, whole[: len(whole) // 2])
    before = _unreadable_count("md-raw-logs")

    etl = build_etl(settings)
    etl.tick()

    assert etl.last_error is None, etl.last_error
    ok, message = exactly_once(raw, settings)
    assert ok, message
    assert _unreadable_count("md-raw-logs") - before == 2
    quarantine = (
        open_catalog(settings, name="checker").load_table("telemetry.quarantine").scan().to_arrow()
    )
    rows = {r["source_key"]: r for r in quarantine.to_pylist()}
    assert set(rows) == {not_gzip, truncated}
    assert rows[not_gzip]["reason"] == (
        f"unreadable object: object '{not_gzip}' is not valid gzip: "
        "Error -3 while decompressing data: incorrect header check"
    )
    assert rows[truncated]["reason"] == (
        f"unreadable object: object '{truncated}' is a truncated gzip stream"
    )
    assert {(r["line_number"], r["raw_line"], r["kind"]) for r in rows.values()} == {
        (0, None, "log")
    }
    assert {(r["service"], str(r["dt"]), r["hr"]) for r in rows.values()} == {
        ("auth-service", "2026-11-27", 6),
        ("payment-service", "2026-11-27", 6),
    }
    assert etl.health()[0]

    # The next fold has nothing left to read and adds no second quarantine row.
    raw.put(records(30, 22, "2026-11-27T06:40:00Z"))
    etl.tick()
    assert etl.last_error is None, etl.last_error
    ok, message = exactly_once(raw, settings)
    assert ok, message
    quarantine = (
        open_catalog(settings, name="checker").load_table("telemetry.quarantine").scan().to_arrow()
    )
    assert sorted(pc.unique(quarantine["source_key"]).to_pylist()) == sorted([not_gzip, truncated])
    assert quarantine.num_rows == 2
    assert _unreadable_count("md-raw-logs") - before == 2

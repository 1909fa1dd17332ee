"""Which raw objects a fold lists: the hours near now on every fold, the lookback hours on their
own schedule, every hour on the full listing. Against a real emulator."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from stages.common import lake
from stages.common.config import Settings
from stages.etl import planner
from tests.etl.support import RawLake

NOW = datetime(2026, 11, 27, 6, 30, tzinfo=UTC)
SERVICES = ("api-gateway", "auth-service", "payment-service")


def _lay_out(settings: Settings, hours: dict[str, datetime]) -> dict[str, set[str]]:
    """One log and one metric object per service in each of ``hours``; their keys by name."""
    raw = RawLake(settings)
    keys: dict[str, set[str]] = {}
    for name, moment in hours.items():
        hour = lake.hour_of(moment)
        keys[name] = {
            raw.put_object(kind, service, hour, b'{"event_id": "x"}\n')
            for service in SERVICES
            for kind in ("log", "metric")
        }
    return keys


def test_near_lookback_and_full_listings_find_their_hours(lake_settings: Settings) -> None:
    settings = lake_settings.model_copy(update={"etl_lookback_hours": 2})
    keys = _lay_out(
        settings,
        {
            "five hours ago": NOW - timedelta(hours=5),
            "two hours ago": NOW - timedelta(hours=2),
            "previous": NOW - timedelta(hours=1),
            "current": NOW,
            "next": NOW + timedelta(hours=1),
        },
    )
    s3 = RawLake(settings).s3

    def listed(objects: list[planner.RawObject]) -> set[str]:
        return {o.key for o in objects}

    # Mid-hour: only the current hour.
    assert listed(planner.list_near(s3, settings, NOW)) == keys["current"]
    # Just after the hour turned: the previous hour too (records of its last seconds land late).
    turned = NOW.replace(minute=2)
    assert listed(planner.list_near(s3, settings, turned)) == keys["current"] | keys["previous"]
    # Just before the next hour: the next one too (clocks a little ahead).
    ending = NOW.replace(minute=57)
    assert listed(planner.list_near(s3, settings, ending)) == keys["current"] | keys["next"]

    recent = keys["two hours ago"] | keys["previous"] | keys["current"] | keys["next"]
    assert listed(planner.list_recent(s3, settings, NOW)) == recent
    assert listed(planner.list_all(s3, settings)) == recent | keys["five hours ago"]
    # Every listed object knows its bucket's kind and its partition.
    for obj in planner.list_near(s3, settings, NOW):
        assert obj.kind == ("log" if obj.bucket == "md-raw-logs" else "metric")
        assert obj.partition.service in SERVICES and obj.partition.hr == 6


def test_objects_in_no_hour_partition_are_not_folded_and_not_silent(
    lake_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    keys = _lay_out(lake_settings, {"current": NOW})
    s3 = RawLake(lake_settings).s3
    strays = (
        "service=api-gateway/notes.jsonl",  # no hour at all
        "service=api-gateway/year=2026/month=02/day=31/hour=06/part-x.jsonl",  # no such day
    )
    for key in strays:
        s3.put_object(Bucket="md-raw-logs", Key=key, Body=b'{"event_id": "stray"}\n')
    # A dead letter is not data and not a stray either.
    s3.put_object(Bucket="md-raw-logs", Key="_dead-letter/x.jsonl", Body=b"{}\n")
    caplog.set_level(logging.WARNING, logger="stages.etl.planner")

    listed = {o.key for o in planner.list_all(s3, lake_settings)}

    assert listed == keys["current"]
    assert REGISTRY.get_sample_value("etl_raw_objects_outside_layout") == len(strays)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("2 raw objects are in no service/hour partition and are not folded")
    assert "s3://md-raw-logs/service=api-gateway/" in warning

    for key in strays:
        s3.delete_object(Bucket="md-raw-logs", Key=key)
    planner.list_all(s3, lake_settings)
    assert REGISTRY.get_sample_value("etl_raw_objects_outside_layout") == 0

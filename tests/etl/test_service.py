"""The ETL service as a real process against a real emulator: every raw record in its table
exactly once (by event_id) through SIGKILLs at each step of a fold, restarts, late objects, two
processes at once and backfills over folded data."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyiceberg.exceptions import NoSuchTableError

from stages.common.config import Settings
from tests.etl.support import (
    EtlProcess,
    RawLake,
    exactly_once,
    quarantine_rows,
    records,
    table_counts,
    wait_until,
)
from tests.support.processes import ROOT, base_env

HOUR = "year=2026/month=11/day=27/hour=06"
# One log object with two good lines and two that cannot be typed.
MIXED = (
    b'{"event_id":"mixed-1","timestamp":"2026-11-27T06:10:00.000Z","kind":"log",'
    b'"service":"auth-service","level":"INFO","message":"ok"}\n'
    b'{"kind":"log","timestamp":\n'
    b'{"event_id":"mixed-2","timestamp":"2026-11-27T06:11:00.000Z","kind":"log",'
    b'"service":"auth-service","level":"WARN","message":"slow"}\n'
    b'{"event_id":"mixed-3","timestamp":"yesterday","kind":"log","service":"auth-service",'
    b'"level":"INFO","message":"?"}\n'
)
MIXED_GOOD = ("mixed-1", "mixed-2")
MIXED_BAD = 2
FOLD_TIMEOUT = 90.0


def _lake_with_data(settings: Settings, seed: int = 1) -> RawLake:
    raw = RawLake(settings)
    raw.put(records(200, seed, "2026-11-27T06:20:00Z"))
    raw.put(records(60, seed + 100, "2026-11-27T07:20:00Z"), gzip_it=True)
    raw.put_object("log", "auth-service", HOUR, MIXED)
    raw.sent.update(dict.fromkeys(MIXED_GOOD, "log"))
    return raw


def _wait_exactly_once(raw: RawLake, settings: Settings) -> str:
    def check() -> str | None:
        try:
            ok, message = exactly_once(raw, settings)
        except NoSuchTableError:  # the ETL has not created its tables yet
            return None
        return message if ok else None

    try:
        return wait_until(check, FOLD_TIMEOUT, "every raw record in its table once", 1.0)
    except AssertionError:
        _, message = exactly_once(raw, settings)
        raise AssertionError(f"not exactly once: {message}") from None


def _report(record_property: Any, case: str, raw: RawLake, settings: Settings) -> None:
    """The case's load report (in, out, duplicated, lost per table, and the quarantine), printed
    with the fault suite's reports at the end of the run (tests/conftest.py)."""
    ok, message = exactly_once(raw, settings)
    quarantined = quarantine_rows(settings)
    lines = [f"=== ETL load report: {case}", *message.split("; ")]
    lines.append(f"quarantine: in {MIXED_BAD} bad lines, out {quarantined} rows")
    record_property("load_report", "\n".join(lines))
    assert ok, message


def _snapshots(settings: Settings) -> int:
    from stages.etl.tables import open_catalog

    catalog = open_catalog(settings, name="snapshots")
    return sum(
        len(catalog.load_table(f"telemetry.{name}").snapshots())
        for name in ("logs", "metrics", "apm", "quarantine")
    )


def _records_per_service(settings: Settings, table: str) -> dict[str, int]:
    from stages.etl.tables import open_catalog

    catalog = open_catalog(settings, name="counter")
    services = catalog.load_table(table).scan(selected_fields=("service",)).to_arrow()
    return dict(Counter(services.column("service").to_pylist()))


def _log_counts_in_features(settings: Settings) -> dict[str, int]:
    """Logs per service as the features table counts them (the whole-service rows)."""
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.expressions import And, EqualTo

    from stages.etl.tables import open_catalog

    catalog = open_catalog(settings, name="features")
    try:
        table = catalog.load_table("telemetry.features")
    except NoSuchTableError:
        return {}
    rows = table.scan(
        row_filter=And(EqualTo("signal", "log"), EqualTo("name", "*")),
        selected_fields=("service", "count"),
    ).to_arrow()
    out: Counter[str] = Counter()
    services, counts = rows.column("service").to_pylist(), rows.column("count").to_pylist()
    for service, count in zip(services, counts, strict=True):
        out[service] += count
    return dict(out)


def test_the_service_folds_every_record_once_and_answers_its_api(
    lake_settings: Settings, lake_endpoint: str, etl_logs: Path, record_property: Any
) -> None:
    raw = _lake_with_data(lake_settings)
    etl = EtlProcess(lake_endpoint, etl_logs)
    try:
        message = _wait_exactly_once(raw, lake_settings)
        assert quarantine_rows(lake_settings) == MIXED_BAD, message
        status = wait_until(
            lambda: (s := etl.status())["backlog_objects"] == 0 and s, 30, "empty backlog"
        )
        assert status["lease_held"] is True
        assert status["totals"]["objects_folded"] == len(raw.keys)
        assert status["totals"]["quarantined"] == MIXED_BAD
        counts = table_counts(lake_settings)
        assert status["totals"]["rows_logs"] == sum(counts["logs"].values())

        health = httpx.get(f"{etl.url}/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "healthy"
        assert httpx.get(f"{etl.url}/docs", timeout=10).status_code == 200
        scrape = httpx.get(f"{etl.url}/metrics", timeout=10).text
        logs_written = sum(counts["logs"].values())
        assert f'etl_records_written_total{{table="logs"}} {float(logs_written)}' in scrape
        assert f"etl_quarantined_total {float(MIXED_BAD)}" in scrape
        assert "etl_lag_seconds" in scrape

        # The features table follows: these hours are long past their watermark, so every
        # curated log is counted in its service's buckets.
        logs_per_service = _records_per_service(lake_settings, "telemetry.logs")
        wait_until(
            lambda: _log_counts_in_features(lake_settings) == logs_per_service,
            FOLD_TIMEOUT,
            f"features counting {logs_per_service} logs",
            1.0,
        )
        # ... and its state is on the status page: written, nothing pending or failing.
        features = wait_until(
            lambda: (f := etl.status()["features"])["pending_partitions"] == [] and f,
            30,
            "no features partition pending",
        )
        services = set()
        for table in ("logs", "metrics", "apm"):
            services |= set(_records_per_service(lake_settings, f"telemetry.{table}"))
        assert features["builder_started"] is True
        assert features["table"] == "telemetry.features"
        assert features["location"] == "s3://md-features/telemetry/features"
        assert features["bucket_seconds"] == lake_settings.features_bucket_seconds
        # Two hours of data for every service that has any: at least one partition each.
        assert features["partitions_written"] >= len(services) > 0
        assert features["buckets_written"] > 0
        assert features["rebuild_failures"] == 0 and features["last_error"] is None
        written_at = datetime.fromisoformat(features["last_write"])
        assert abs((datetime.now(UTC) - written_at).total_seconds()) < FOLD_TIMEOUT * 2
        written = float(features["partitions_written"])
        scrape = httpx.get(f"{etl.url}/metrics", timeout=10).text
        assert f"etl_features_partitions_written_total {written}" in scrape

        # A late object for hours already folded is folded like any other.
        raw.put(records(40, 77, "2026-11-27T06:40:00Z"))
        _wait_exactly_once(raw, lake_settings)

        # A restart re-reads what the tables hold and adds nothing.
        etl.stop()
        before = _snapshots(lake_settings)
        etl = EtlProcess(lake_endpoint, etl_logs, name="etl-again")
        wait_until(
            lambda: (
                (s := etl.status())["folds"] == 0
                and s["lease_held"]
                and s["objects_listed"] >= len(raw.keys)
                and s["backlog_objects"] == 0
            ),
            30,
            "a fold after the restart",
        )
        _report(record_property, "late object, then a restart", raw, lake_settings)
        assert _snapshots(lake_settings) == before
    finally:
        etl.stop()


@pytest.mark.parametrize(
    "step", ["before-write", "after-data-files", "after-data-files:2", "after-commit"]
)
def test_a_sigkill_at_each_step_of_a_fold_loses_and_duplicates_nothing(
    step: str, lake_settings: Settings, lake_endpoint: str, etl_logs: Path, record_property: Any
) -> None:
    raw = _lake_with_data(lake_settings, seed=3)
    crashing = EtlProcess(lake_endpoint, etl_logs, name="etl-crash", ETL_FAULT_PAUSE_AT=step)
    pause = f"fault injection: paused at {step.split(':')[0]}"
    wait_until(lambda: crashing.log_has(pause), FOLD_TIMEOUT, pause)
    crashing.kill()

    # Objects arriving while the ETL is down, one of them late for a folded hour.
    raw.put(records(30, 44, "2026-11-27T06:50:00Z"))
    etl = EtlProcess(lake_endpoint, etl_logs, name="etl-after")
    try:
        message = _wait_exactly_once(raw, lake_settings)
        assert quarantine_rows(lake_settings) == MIXED_BAD, message
        _report(record_property, f"SIGKILL at {step}, objects added while down", raw, lake_settings)
    finally:
        etl.stop()


def test_two_processes_at_once_write_through_one_lease(
    lake_settings: Settings, lake_endpoint: str, etl_logs: Path, record_property: Any
) -> None:
    # A 6 s lease, not the usual 3 s: the holder renews it every 2 s, so a stall of the holder
    # (a slow lease call on a loaded machine) must last 4 s before the standby may fold.
    lease = {"ETL_LEASE_SECONDS": "6"}
    first = EtlProcess(lake_endpoint, etl_logs, name="etl-a", **lease)
    second = EtlProcess(lake_endpoint, etl_logs, name="etl-b", **lease)
    try:
        raw = _lake_with_data(lake_settings, seed=5)
        _wait_exactly_once(raw, lake_settings)
        holders = [p for p in (first, second) if p.status()["lease_held"]]
        assert len(holders) == 1, [p.status() for p in (first, second)]
        standby = second if holders[0] is first else first
        assert standby.status()["totals"]["objects_folded"] == 0
        # The standby keeps no features table: its section says so, with nothing counted.
        idle = standby.status()["features"]
        assert idle["builder_started"] is False
        assert idle["table"] == "telemetry.features"
        assert idle["partitions_written"] == idle["rebuild_failures"] == 0
        assert idle["pending_partitions"] == [] and idle["last_write"] is None
        assert holders[0].status()["features"]["builder_started"] is True

        holders[0].kill()
        raw.put(records(50, 55, "2026-11-27T07:10:00Z"))
        _wait_exactly_once(raw, lake_settings)
        assert standby.status()["lease_held"] is True
        assert quarantine_rows(lake_settings) == MIXED_BAD
        _report(record_property, "two processes, the holder SIGKILLed", raw, lake_settings)
    finally:
        first.stop()
        second.stop()


def _backfill(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stages.etl", "backfill", *args],
        env=base_env(endpoint, ETL_LEASE_SECONDS="2"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_backfill_over_folded_data_changes_nothing_and_rebuilds_what_is_gone(
    lake_settings: Settings, lake_endpoint: str, etl_logs: Path, record_property: Any
) -> None:
    raw = _lake_with_data(lake_settings, seed=7)
    etl = EtlProcess(lake_endpoint, etl_logs)
    try:
        _wait_exactly_once(raw, lake_settings)
    finally:
        etl.stop()  # SIGTERM hands the lease back
    folded = table_counts(lake_settings)
    # The backfill rebuilds the features of the hours it rewrites, from nothing if need be.
    from stages.etl.tables import open_catalog

    open_catalog(lake_settings, name="dropper").drop_table("telemetry.features")

    for _ in range(2):
        done = _backfill(lake_endpoint, "--from", "2026-11-27T06", "--to", "2026-11-27T09")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2026-11-27T06:" in done.stdout and "2026-11-27T07:" in done.stdout
        ok, message = exactly_once(raw, lake_settings)
        assert ok, message
        assert table_counts(lake_settings) == folded
        assert quarantine_rows(lake_settings) == MIXED_BAD
        logs_per_service = _records_per_service(lake_settings, "telemetry.logs")
        assert _log_counts_in_features(lake_settings) == logs_per_service
    _report(record_property, "backfill twice over folded hours", raw, lake_settings)

    bad = _backfill(lake_endpoint, "--from", "2026-11-27T09", "--to", "2026-11-27T06")
    assert bad.returncode == 2 and "--to must be after --from" in bad.stderr
    bad = _backfill(lake_endpoint, "--from", "noon", "--to", "2026-11-27T06")
    assert bad.returncode == 2 and "error:" in bad.stderr

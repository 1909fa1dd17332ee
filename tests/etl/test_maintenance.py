"""The fold and the maintenance passes in-process on a real emulator: one file per partition per
fold, compaction of closed hours (and again after a late object), snapshot expiry, orphan
removal, the commit hook, and a commit conflict retried without duplicates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from stages.common import aws
from stages.common.config import Settings
from stages.common.lakehouse import FEATURES_BUCKET
from stages.etl.app import build_etl
from stages.etl.committer import Partition
from stages.etl.features import FEATURES_TABLE, SORT_KEYS
from stages.etl.fold import CommitInfo
from stages.etl.tables import open_catalog
from tests.etl.support import RawLake, exactly_once, partitions_files, records

HOUR = "year=2026/month=11/day=27/hour=06"


def _settings(base: Settings, **extra: object) -> Settings:
    return base.model_copy(
        update={
            "etl_full_listing_seconds": 0,
            "etl_allowed_lateness_seconds": 0,
            "etl_snapshots_keep": 1,
            "etl_snapshot_max_age_seconds": 0,
            **extra,
        }
    )


def test_folds_compaction_late_object_and_the_commit_hook(lake_settings: Settings) -> None:
    settings = _settings(lake_settings)
    raw = RawLake(settings)
    seen: list[CommitInfo] = []
    etl = build_etl(settings, on_commit=[seen.append])

    raw.put(records(120, 1, "2026-11-27T06:05:00Z"))
    etl.tick()
    assert etl.last_error is None
    ok, message = exactly_once(raw, settings)
    assert ok, message
    files = partitions_files(settings, "logs")
    assert set(files.values()) == {1}, files  # one file per partition per fold

    # The hook names every (table, service, dt, hr) the fold wrote.
    assert len(seen) == 1
    expected = {
        Partition(table, r["service"], date(2026, 11, 27), int(r["timestamp"][11:13]))
        for r in records(120, 1, "2026-11-27T06:05:00Z")
        for table in [{"log": "logs", "metric": "metrics", "apm": "apm"}[r["kind"]]]
    }
    assert seen[0].partitions == expected
    assert seen[0].rows == {
        name: sum(1 for r in raw.sent.values() if r == kind)
        for kind, name in (("log", "logs"), ("metric", "metrics"), ("apm", "apm"))
    }

    # A second fold of the same hours adds a second file to the partitions it touches.
    raw.put(records(120, 2, "2026-11-27T06:05:00Z"))
    etl.tick()
    assert len(seen) == 2
    before = partitions_files(settings, "logs")
    assert max(before.values()) == 2

    # The hour is closed (lateness 0): compaction leaves one file per partition, same rows.
    etl.maintenance(datetime.now(UTC))
    after = partitions_files(settings, "logs")
    assert set(after) == set(before) and set(after.values()) == {1}, after
    ok, message = exactly_once(raw, settings)
    assert ok, message

    # A late object for the compacted hour is folded, then the hour is compacted again.
    raw.put(records(30, 3, "2026-11-27T06:05:00Z"))
    etl.tick()
    assert max(partitions_files(settings, "logs").values()) == 2
    etl.maintenance(datetime.now(UTC))
    assert set(partitions_files(settings, "logs").values()) == {1}
    ok, message = exactly_once(raw, settings)
    assert ok, message

    # Expiry keeps one snapshot (ETL_SNAPSHOTS_KEEP=1); orphan removal, run as if an hour
    # later, deletes the expired snapshots' files and keeps every file the table reads.
    logs = open_catalog(settings, name="check").load_table("telemetry.logs")
    assert len(logs.snapshots()) == 1
    s3 = aws.client("s3", settings)
    stray = "telemetry/logs/data/service=auth-service/dt=2026-11-27/hr=6/never-committed.parquet"
    s3.put_object(Bucket="md-processed", Key=stray, Body=b"PAR1")
    removed = etl.maintenance.remove_orphans("log", datetime.now(UTC) + timedelta(hours=2))
    assert removed > 1
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="md-processed")["Contents"]}
    assert stray not in keys
    ok, message = exactly_once(raw, settings)
    assert ok, message


def test_a_commit_conflict_is_retried_from_a_fresh_load_without_duplicates(
    lake_settings: Settings,
) -> None:
    settings = _settings(lake_settings)
    raw = RawLake(settings)
    etl = build_etl(settings)
    raw.put(records(60, 4, "2026-11-27T06:05:00Z"))
    etl.tick()
    committer = etl.committer
    stale = committer.tables["log"]

    # Another commit lands on the logs table behind this writer's back (same token: the
    # lease is not the point here, the table's version is).
    raw.put(records(60, 5, "2026-11-27T06:05:00Z"))
    other = build_etl(settings)
    other.lease = etl.lease
    other.committer.lease = etl.lease
    other.tick()
    committer.tables["log"] = stale  # our view is now one version behind
    raw.put(records(60, 6, "2026-11-27T06:05:00Z"))
    etl.waiting.clear()
    committer.held["log"] -= {k for k in raw.keys if "logs-stream" in k}  # forget, as if stale
    etl.tick()
    assert etl.last_error is None
    ok, message = exactly_once(raw, settings)
    assert ok, message
    conflicts = [
        v
        for family in __import__("prometheus_client").REGISTRY.collect()
        for v in family.samples
        if v.name == "etl_commit_conflicts_total" and v.labels.get("table") == "logs"
    ]
    assert conflicts and conflicts[0].value >= 1


def test_the_features_table_keeps_its_rows_and_only_the_retained_snapshots(
    lake_settings: Settings,
) -> None:
    """Snapshot expiry and orphan removal of telemetry.features, run by the ETL's maintenance
    pass: the newest ETL_SNAPSHOTS_KEEP snapshots stay, the rows and every file the current
    snapshot references stay, the files only expired snapshots referenced go, and the features
    step goes on committing after it."""
    from prometheus_client import REGISTRY

    settings = _settings(lake_settings, etl_snapshots_keep=2)
    raw = RawLake(settings)
    etl = build_etl(settings)
    step = etl.on_commit[0].__self__  # type: ignore[attr-defined]  # the FeatureStep
    # Four folds of one long-past hour: one features commit each, every fold after the first
    # replacing each partition's file (late records), so old snapshots reference other files.
    for seed in (61, 62, 63, 64):
        raw.put(records(200, seed, "2026-11-27T06:00:00Z", spread_seconds=3000))
        etl.tick()
        assert etl.last_error is None
    catalog = open_catalog(settings, name="features-check")
    table = catalog.load_table(FEATURES_TABLE)
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    assert len(snapshots) == 4
    rows = table.scan().to_arrow().sort_by(SORT_KEYS)
    assert rows.num_rows > 0
    current = set(table.inspect.files().column("file_path").to_pylist())
    every = set(table.inspect.all_files().column("file_path").to_pylist())
    assert every - current  # files only older snapshots reference
    s3 = aws.client("s3", settings)
    stray = "telemetry/features/data/service=auth-service/dt=2026-11-27/hr=6/stray.parquet"
    s3.put_object(Bucket=FEATURES_BUCKET, Key=stray, Body=b"PAR1")
    errors = REGISTRY.get_sample_value("etl_maintenance_errors_total", {"step": "expire_snapshots"})
    conflicts = REGISTRY.get_sample_value("etl_commit_conflicts_total", {"table": "features"}) or 0
    # Another commit to the features table (as the features thread's) lands between the expiry's
    # load and its catalog update: the catalog refuses the expiry, which is redone.
    glue = etl.committer.catalog.glue
    original = glue.update_table
    raced: list[int] = []

    def race_the_expiry(**kwargs: Any) -> Any:
        if kwargs["TableInput"]["Name"] == "features" and not raced:
            raced.append(1)
            moved = open_catalog(settings, name="other-writer").load_table(FEATURES_TABLE)
            moved.transaction().set_properties({"test.moved": "1"}).commit_transaction()
        return original(**kwargs)

    glue.update_table = race_the_expiry

    # The whole pass, as the fold loop runs it, an hour later (orphans older than the safety age).
    etl.maintenance(datetime.now(UTC) + timedelta(hours=2))
    glue.update_table = original
    assert raced
    assert (
        REGISTRY.get_sample_value("etl_commit_conflicts_total", {"table": "features"})
        == conflicts + 1
    )

    table = catalog.load_table(FEATURES_TABLE)
    kept = [s.snapshot_id for s in sorted(table.snapshots(), key=lambda s: s.timestamp_ms)]
    assert kept == [s.snapshot_id for s in snapshots[-2:]]
    assert table.current_snapshot().snapshot_id == snapshots[-1].snapshot_id
    after = table.scan().to_arrow().sort_by(SORT_KEYS)
    assert after.equals(rows)
    keys = {
        f"s3://{FEATURES_BUCKET}/{o['Key']}"
        for o in s3.list_objects_v2(Bucket=FEATURES_BUCKET)["Contents"]
    }
    assert current <= keys  # every data file the current snapshot reads is still there
    kept_files = set(table.inspect.all_files().column("file_path").to_pylist())
    assert not (every - kept_files) & keys  # the files of the expired snapshots are gone
    assert f"s3://{FEATURES_BUCKET}/{stray}" not in keys
    assert (
        REGISTRY.get_sample_value("etl_maintenance_errors_total", {"step": "expire_snapshots"})
        == errors
    )

    # The features step commits on top of the maintained table without starting over.
    rebuilt = step.builder.status()["partitions_rebuilt"]
    raw.put(records(200, 65, "2026-11-27T06:00:00Z", spread_seconds=3000))
    etl.tick()
    assert etl.last_error is None
    status = step.builder.status()
    assert status["rebuild_failures"] == 0 and status["partitions_rebuilt"] == rebuilt
    table = catalog.load_table(FEATURES_TABLE)
    assert len(table.snapshots()) == 3
    assert table.scan().to_arrow().num_rows >= rows.num_rows

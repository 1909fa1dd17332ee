"""telemetry.features: per-service signals in buckets, checked against figures computed here from
the input records, and the watermark, late data and re-runs against a real emulator."""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pydantic
import pytest

from stages.common.config import Settings
from stages.etl.features import (
    ALL,
    FEATURES_LOCATION,
    FEATURES_TABLE,
    LEVELS,
    SORT_KEYS,
    FeatureBuilder,
    Partition,
    compute_features,
    compute_partition,
    ensure_features_table,
)
from stages.etl.tables import ensure_tables, open_catalog
from stages.etl.typing import KINDS, type_jsonl
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import SynthesizeRequest

LABELS = ("is_anomaly", "scenario_id", "anomaly_type", "anomaly_score")
HOUR = "2026-03-01T10:00:00Z"


def _synthesized(
    count: int, seed: int, start: str = HOUR, spread: float = 600, services: list[str] | None = None
) -> list[Any]:
    body: dict[str, Any] = {
        "count": count,
        "seed": seed,
        "timestamp": start,
        "spread_seconds": spread,
        "anomaly": {
            "anomaly_type": "api_errors",
            "scenario_id": "sc-test",
            "intensity": 90,
            "window_start": start,
            "window_end": "2026-03-01T10:05:00Z",
            "target_service": "payment-service",
        },
        "anomalous_share": 0.5,
    }
    if services:
        body["services"] = services
        body["anomaly"]["target_service"] = services[0]
    return synthesize(SynthesizeRequest.model_validate(body), EntityPool()).records


def _typed(records: list[dict[str, Any]]) -> dict[str, pa.Table]:
    typed = type_jsonl(b"\n".join(orjson.dumps(r) for r in records))
    assert typed.quarantine.num_rows == 0
    return typed.tables


def _moment(record: dict[str, Any]) -> datetime:
    return datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _bucket(record: dict[str, Any], width: int) -> datetime:
    moment = _moment(record)
    seconds = moment.minute * 60 + moment.second
    return moment.replace(minute=0, second=0, microsecond=0) + timedelta(
        seconds=seconds - seconds % width
    )


def _quantile(values: list[float], q: float) -> float:
    """The stdlib's 'inclusive' percentile (numpy's default 'linear')."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _rows(features: pa.Table) -> dict[tuple[str, str, str, datetime], dict[str, Any]]:
    out = {}
    for row in features.to_pylist():
        key = (row["service"], row["signal"], row["name"], row["bucket_start"])
        assert key not in out, key
        out[key] = row
    return out


def test_features_match_figures_computed_from_the_records() -> None:
    records = _synthesized(4000, seed=3)
    width = 10
    features = _rows(compute_features(_typed(records), width))

    expected: dict[tuple[str, str, str, datetime], list[Any]] = defaultdict(list)
    for r in records:
        bucket = _bucket(r, width)
        if r["kind"] == "metric":
            expected[(r["service"], "metric", r["metric_name"], bucket)].append(r["value"])
        elif r["kind"] == "apm":
            sample = (r["duration_ms"], r["status"] == "ERROR")
            expected[(r["service"], "apm", r["name"], bucket)].append(sample)
            expected[(r["service"], "apm", ALL, bucket)].append(sample)
        else:
            expected[(r["service"], "log", ALL, bucket)].append(r)
    log_buckets = {k for k in expected if k[1] == "log"}
    for service, _, _, bucket in log_buckets:
        group = expected[(service, "log", ALL, bucket)]
        for level in {*LEVELS, *(r["level"] for r in group)}:
            expected[(service, "log", f"level.{level}", bucket)] = [
                r for r in group if r["level"] == level
            ]
        for category in {r["category"] for r in group if r.get("category")}:
            expected[(service, "log", f"category.{category}", bucket)] = [
                r for r in group if r.get("category") == category
            ]

    assert set(features) == set(expected)
    signals = {key[1] for key in expected}
    assert signals == {"metric", "apm", "log"}
    for key, values in expected.items():
        row = features[key]
        assert row["count"] == len(values), key
        assert row["bucket_seconds"] == width
        assert (row["dt"], row["hr"]) == (key[3].date(), key[3].hour)
        if key[1] == "metric":
            assert row["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
            assert (row["min"], row["max"]) == (min(values), max(values))
            assert row["error_count"] is None
        elif key[1] == "apm":
            durations = sorted(v[0] for v in values)
            errors = sum(v[1] for v in values)
            assert row["error_count"] == errors
            assert row["error_rate"] == pytest.approx(errors / len(values))
            assert row["mean"] == pytest.approx(statistics.fmean(durations), rel=1e-12)
            assert (row["min"], row["max"]) == (durations[0], durations[-1])
            for column, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                assert row[column] == pytest.approx(_quantile(durations, q), rel=1e-12), key
        elif key[2] == ALL:
            errors = sum(r["level"] in ("ERROR", "FATAL") for r in values)
            assert row["error_count"] == errors
            assert row["error_rate"] == pytest.approx(errors / len(values))
        else:
            assert row["mean"] is None and row["p50"] is None
    # Errors happened, so the error columns were really exercised.
    assert any(r["error_count"] for k, r in features.items() if k[1] == "apm")
    assert any(r["error_count"] for k, r in features.items() if k[1] == "log")


def _log(timestamp: str, level: str = "INFO", **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"{random.getrandbits(128):032x}",
        "timestamp": timestamp,
        "kind": "log",
        "service": "auth-service",
        "level": level,
        "message": "m",
        "category": "security",
    } | overrides


def _metric(timestamp: str, value: float, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"{random.getrandbits(128):032x}",
        "timestamp": timestamp,
        "kind": "metric",
        "service": "auth-service",
        "metric_name": "cpu.utilization",
        "value": value,
        "unit": "percent",
    } | overrides


def test_bucket_boundaries() -> None:
    records = [
        _metric("2026-03-01T10:00:00.000Z", 1.0),
        _metric("2026-03-01T10:00:09.999Z", 3.0),
        _metric("2026-03-01T10:00:10.000Z", 10.0),
        _metric("2026-03-01T10:59:59.999Z", 7.0),
        _metric("2026-03-01T11:00:00.000Z", 9.0),
    ]
    features = compute_features(_typed(records), 10).to_pylist()
    got = [(r["bucket_start"], r["count"], r["mean"], r["dt"], r["hr"]) for r in features]
    day = date(2026, 3, 1)
    assert got == [
        (datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC), 2, 2.0, day, 10),
        (datetime(2026, 3, 1, 10, 0, 10, tzinfo=UTC), 1, 10.0, day, 10),
        (datetime(2026, 3, 1, 10, 59, 50, tzinfo=UTC), 1, 7.0, day, 10),
        (datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC), 1, 9.0, day, 11),
    ]
    # A wider bucket folds the first two buckets together.
    minute = compute_features(_typed(records), 60).to_pylist()
    assert [(r["bucket_start"].minute, r["count"]) for r in minute] == [(0, 3), (59, 1), (0, 1)]


def test_every_standard_level_has_a_row_where_the_service_logged() -> None:
    records = [
        _log("2026-03-01T10:00:01.000Z", "ERROR"),
        _log("2026-03-01T10:00:02.000Z", "FATAL", category="database"),
        _log("2026-03-01T10:00:03.000Z", "NOTICE"),
        _log("2026-03-01T10:00:04.000Z", "INFO"),
    ]
    rows = {r["name"]: r for r in compute_features(_typed(records), 10).to_pylist()}
    assert {name: r["count"] for name, r in rows.items()} == {
        ALL: 4,
        "level.TRACE": 0,
        "level.DEBUG": 0,
        "level.INFO": 1,
        "level.WARN": 0,
        "level.ERROR": 1,
        "level.FATAL": 1,
        "level.NOTICE": 1,
        "category.security": 3,
        "category.database": 1,
    }
    assert (rows[ALL]["error_count"], rows[ALL]["error_rate"]) == (2, 0.5)


def test_ground_truth_fields_are_not_features() -> None:
    records = _synthesized(3000, seed=5)
    assert any(r.get("is_anomaly") for r in records)
    baseline = compute_features(_typed(records), 10)

    scrubbed = [{k: v for k, v in r.items() if k not in LABELS} for r in records]
    rng = random.Random(1)
    flipped = [
        r
        | {
            "is_anomaly": rng.random() < 0.5,
            "scenario_id": f"sc-{rng.randrange(99)}",
            "anomaly_type": rng.choice(["cpu_spike", "disk_full"]),
            "anomaly_score": rng.uniform(0, 100),
        }
        for r in records
    ]
    assert compute_features(_typed(scrubbed), 10).equals(baseline)
    assert compute_features(_typed(flipped), 10).equals(baseline)
    assert not set(baseline.column_names) & set(LABELS)


def test_row_order_does_not_change_the_features() -> None:
    records = _synthesized(2000, seed=9)
    shuffled = records[:]
    random.Random(2).shuffle(shuffled)
    assert compute_features(_typed(shuffled), 10).equals(compute_features(_typed(records), 10))


def test_a_bucket_width_that_does_not_divide_the_hour_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="must divide 3600"):
        Settings(features_bucket_seconds=7)
    assert Settings(features_bucket_seconds=15).features_bucket_seconds == 15
    with pytest.raises(ValueError, match="must divide 3600"):
        compute_features({}, 7)


# --- with the emulator ------------------------------------------------------------------------

PARTITION = Partition("auth-service", date(2026, 3, 1), 10)


def _at(seconds: float) -> datetime:
    return datetime(2026, 3, 1, 10, tzinfo=UTC) + timedelta(seconds=seconds)


def _stamp(seconds: float) -> str:
    return _at(seconds).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _commit(tables: dict[str, Any], records: list[dict[str, Any]]) -> list[Any]:
    """Append ``records`` to the curated tables; the touched partitions, as the ETL reports them."""
    typed = _typed(records)
    touched = set()
    for kind in KINDS:
        if typed[kind].num_rows:
            tables[kind].append(typed[kind])
            for service, dt, hr in zip(
                *(typed[kind].column(c).to_pylist() for c in ("service", "dt", "hr")), strict=True
            ):
                touched.add((tables[kind].name()[-1], str(service), dt, hr))
    return sorted(touched)


def _stored(settings: Settings) -> pa.Table:
    table = open_catalog(settings, name="reader").load_table(FEATURES_TABLE)
    return table.scan().to_arrow()


def _by_bucket(features: pa.Table) -> dict[int, int]:
    """Seconds into the hour -> log records, read off the '*' rows."""
    return {
        (r["bucket_start"] - _at(0)).seconds: r["count"]
        for r in features.to_pylist()
        if r["signal"] == "log" and r["name"] == ALL
    }


def test_watermark_late_data_and_reruns(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"features_bucket_seconds": 10, "features_allowed_lateness_seconds": 30}
    )
    catalog = open_catalog(settings)
    tables = ensure_tables(catalog)
    builder = FeatureBuilder(catalog, settings)
    assert builder._table.location() == FEATURES_LOCATION

    # Buckets 0 s and 10 s get records; the first closes at 10 + 30 = 40 s.
    touched = _commit(tables, [_log(_stamp(s)) for s in (1, 2, 3, 12)])
    assert touched == [("logs", "auth-service", date(2026, 3, 1), 10)]
    report = builder.after_commit(touched, _at(39.9))
    assert report.written == [] and _stored(settings).num_rows == 0
    report = builder.tick(_at(40))
    assert report.written == [PARTITION] and report.buckets_written == 1
    assert _by_bucket(_stored(settings)) == {0: 3}

    # Within the lateness: a record for bucket 10 s arrives at 45 s, before its watermark (50 s).
    builder.after_commit(_commit(tables, [_log(_stamp(19.999), "ERROR")]), _at(45))
    assert _by_bucket(_stored(settings)) == {0: 3}
    report = builder.tick(_at(50))
    assert _by_bucket(_stored(settings)) == {0: 3, 10: 2}
    assert report.late_records == 0

    # Beyond it: a record for bucket 0 s arrives at 55 s, after the bucket was written. It is
    # folded in and counted as late.
    report = builder.after_commit(_commit(tables, [_log(_stamp(5), "ERROR")]), _at(55))
    assert report.written == [PARTITION] and report.late_records == 1
    stored = _stored(settings)
    assert _by_bucket(stored) == {0: 4, 10: 2}
    errors = {
        (r["bucket_start"] - _at(0)).seconds: r["count"]
        for r in stored.to_pylist()
        if r["name"] == "level.ERROR"
    }
    assert errors == {0: 1, 10: 1}
    status = builder.status()
    assert status["late_records"] == 1 and status["buckets_written"] == 2
    assert status["table"] == FEATURES_TABLE and status["pending_partitions"] == []

    # A record for bucket 30 s (open) arrives at 62 s; bucket 20 s is closed then, empty. A
    # record for it at 64 s is late too, although the bucket had no row.
    report = builder.after_commit(_commit(tables, [_log(_stamp(31))]), _at(62))
    assert report.late_records == 0 and _by_bucket(_stored(settings)) == {0: 4, 10: 2}
    report = builder.after_commit(_commit(tables, [_log(_stamp(22))]), _at(64))
    assert report.late_records == 1 and _by_bucket(_stored(settings)) == {0: 4, 10: 2, 20: 1}
    assert builder.status()["late_records"] == 2

    # Nothing new: no rebuild, no snapshot.
    snapshots = len(catalog.load_table(FEATURES_TABLE).snapshots())
    assert builder.tick(_at(66)).rebuilt == []
    assert len(catalog.load_table(FEATURES_TABLE).snapshots()) == snapshots

    # A restarted builder re-derives the same rows and writes nothing; a late record that
    # arrives then is still seen as late against what the table holds.
    again = FeatureBuilder(open_catalog(settings, name="restarted"), settings)
    report = again.rebuild(PARTITION, _at(66))
    assert report.rebuilt == [PARTITION] and report.written == [] and report.late_records == 0
    assert len(catalog.load_table(FEATURES_TABLE).snapshots()) == snapshots
    report = again.after_commit(_commit(tables, [_log(_stamp(11))]), _at(70))
    assert report.late_records == 1
    assert _by_bucket(_stored(settings)) == {0: 4, 10: 3, 20: 1, 30: 1}

    # Compaction replaces the hour's curated files with one file of the same rows: the builder
    # (which keeps the rows of the files it read) sees the same features and writes nothing.
    logs = catalog.load_table("telemetry.logs")
    assert len(logs.inspect.files()) == 6
    logs.overwrite(logs.scan().to_arrow(), overwrite_filter=PARTITION.row_filter())
    assert len(catalog.load_table("telemetry.logs").inspect.files()) == 1
    report = again.after_commit([("telemetry.logs", "auth-service", date(2026, 3, 1), 10)], _at(75))
    assert report.rebuilt == [PARTITION] and report.written == [] and report.late_records == 0
    assert _by_bucket(_stored(settings)) == {0: 4, 10: 3, 20: 1, 30: 1}

    # The table is exactly the features of the curated rows of its closed buckets.
    expected = compute_partition(catalog, PARTITION, 10).filter(
        pa.compute.less(pa.compute.field("bucket_start"), pa.scalar(_at(40)))
    )
    stored = _stored(settings).select(expected.column_names).cast(expected.schema)
    assert stored.sort_by([("name", "ascending"), ("bucket_start", "ascending")]).equals(
        expected.sort_by([("name", "ascending"), ("bucket_start", "ascending")])
    )


def test_a_realistic_batch_round_trips_and_a_rerun_gives_the_same_table(
    settings: Settings,
) -> None:
    catalog = open_catalog(settings)
    tables = ensure_tables(catalog)
    # Two services keep the test quick (APM traces reach the others: left out).
    two = ["api-gateway", "auth-service"]
    records = [
        r for r in _synthesized(3000, seed=11, spread=300, services=two) if r["service"] in two
    ]
    builder = FeatureBuilder(catalog, settings)
    touched = _commit(tables, records)
    report = builder.after_commit(touched, _at(3600 + 60))
    services = {r["service"] for r in records}
    assert {p.service for p in report.written} == services and not report.failed
    # Both partitions in one commit.
    assert len(catalog.load_table(FEATURES_TABLE).snapshots()) == 1
    first = _stored(settings).sort_by([("service", "ascending"), ("signal", "ascending")])
    expected = compute_features(_typed(records), settings.features_bucket_seconds)
    assert first.num_rows == expected.num_rows
    got = first.select(expected.column_names).cast(expected.schema)
    assert got.sort_by(SORT_KEYS).equals(expected)

    # Drop the features table and build it again from the curated tables: the same rows.
    catalog.drop_table(FEATURES_TABLE)
    rebuilt = FeatureBuilder(open_catalog(settings, name="second"), settings)
    report = rebuilt.after_commit(touched, _at(3600 + 60))
    assert len(report.written) == len(services)
    second = _stored(settings).select(expected.column_names).cast(expected.schema)
    assert second.sort_by(SORT_KEYS).equals(expected)


def test_a_failed_rebuild_is_counted_and_retried(settings: Settings) -> None:
    catalog = open_catalog(settings)
    ensure_features_table(catalog)
    builder = FeatureBuilder(catalog, settings)
    # The curated tables do not exist yet: the rebuild fails, the partition stays due.
    report = builder.after_commit([("telemetry.logs", "auth-service", "2026-03-01", 10)], _at(3600))
    assert list(report.failed) == [PARTITION] and "NoSuchTable" in report.failed[PARTITION]
    status = builder.status()
    assert status["rebuild_failures"] == 1 and status["pending_partitions"] == [str(PARTITION)]
    assert "NoSuchTable" in status["last_error"]

    tables = ensure_tables(catalog)
    _commit(tables, [_log(_stamp(1))])
    report = builder.tick(_at(3600))
    assert report.written == [PARTITION] and not report.failed
    assert _by_bucket(_stored(settings)) == {0: 1}
    assert builder.status()["pending_partitions"] == []


# --- the incremental path: closed buckets from the rows handed over -------------------------


def _commit_and_prime(
    tables: dict[str, Any], builder: FeatureBuilder | None, records: list[dict[str, Any]]
) -> list[Any]:
    """Append ``records`` (one service) to the curated tables and hand ``builder`` the rows of
    each data file added, as the ETL's fold does; the touched partitions."""
    typed = _typed(records)
    files = []
    for kind in KINDS:
        rows = typed[kind]
        if not rows.num_rows:
            continue
        table = tables[kind]
        before = set()
        if table.current_snapshot() is not None:
            before = set(table.inspect.files().column("file_path").to_pylist())
        table.append(rows)
        (path,) = set(table.inspect.files().column("file_path").to_pylist()) - before
        files.append((kind, path, rows))
    if builder is not None:
        builder.prime(files)
    return sorted(
        (tables[kind].name()[-1], service, dt, hr)
        for kind, _, rows in files
        for service, dt, hr in set(
            zip(*(rows.column(c).to_pylist() for c in ("service", "dt", "hr")), strict=True)
        )
    )


def _exact(settings: Settings, catalog: Any, partition: Partition, closed_before: datetime) -> None:
    """The stored features of ``partition`` are exactly those of the curated rows of its closed
    buckets, with no (series, bucket) twice."""
    stored = _stored(settings)
    stored = stored.filter(
        pa.compute.and_(
            pa.compute.equal(stored.column("service"), partition.service),
            pa.compute.equal(stored.column("hr"), partition.hr),
        )
    )
    expected = compute_partition(catalog, partition, 10)
    expected = expected.filter(
        pa.compute.less(pa.compute.field("bucket_start"), pa.scalar(closed_before))
    )
    got = stored.select(expected.column_names).cast(expected.schema).sort_by(SORT_KEYS)
    assert got.num_rows == len(_rows(got))  # no (series, bucket) written twice
    assert got.equals(expected.sort_by(SORT_KEYS))


def _count_curated_scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gains an item at every read of the curated tables by the features step."""
    from stages.etl import features as module

    scans: list[int] = []
    original = module.scan_partitions

    def counted(*args: Any, **kwargs: Any) -> Any:
        scans.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "scan_partitions", counted)
    return scans


def test_closed_buckets_are_appended_from_the_rows_handed_over(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(
        update={"features_bucket_seconds": 10, "features_allowed_lateness_seconds": 30}
    )
    catalog = open_catalog(settings)
    tables = ensure_tables(catalog)

    scans = _count_curated_scans(monkeypatch)
    builder = FeatureBuilder(catalog, settings)
    # The first call finds the partition in the curated tables (committed before the builder
    # started): it is rebuilt from them once.
    touched = _commit_and_prime(tables, builder, [_log(_stamp(s)) for s in (1, 2, 12)])
    builder.after_commit(touched, _at(39))
    assert len(scans) == 1 and _stored(settings).num_rows == 0

    # From now on every fold's rows come from the fold: nothing is read back.
    random.seed(7)
    values = [round(random.uniform(0, 100), 3) for _ in range(40)]
    folds = [
        ([_log(_stamp(15), "ERROR"), _metric(_stamp(16), values[0])], 40),  # bucket 0 closes
        ([_metric(_stamp(21 + i / 10), v) for i, v in enumerate(values[1:20])], 45),
        ([_log(_stamp(25), "WARN", category="database")], 51),  # bucket 10 closes
        ([_metric(_stamp(33), v) for v in values[20:]] + [_log(_stamp(4), "FATAL")], 62),
        ([], 75),  # a tick: buckets 20 and 30 close
    ]
    snapshots = []
    for records, at in folds:
        touched = _commit_and_prime(tables, builder, records) if records else []
        report = builder.after_commit(touched, _at(at))
        assert not report.failed, report.failed
        snapshots.append(len(catalog.load_table(FEATURES_TABLE).snapshots()))
    assert len(scans) == 1
    # One commit per call that closed a bucket (fold 2 closed none).
    assert snapshots == [1, 1, 2, 3, 4]
    # The FATAL record at 62 s was for bucket 0, written at 40 s: late, and folded in.
    assert builder.status()["late_records"] == 1
    assert _by_bucket(_stored(settings)) == {0: 3, 10: 2, 20: 1}
    _exact(settings, catalog, PARTITION, builder.closed_before(_at(75)))
    # A closed bucket is never written again unless it changes: the table holds every
    # (series, bucket) once, and the pending partition is gone once every bucket closed.
    assert builder.status()["pending_partitions"] == []


def test_after_n_incremental_folds_the_table_is_the_features_of_the_curated_tables(
    lake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real fold (its features step in the caller), hour long past: every fold after the
    first adds rows to buckets already written (late, folded in from the rows kept)."""
    from stages.etl import features as module
    from stages.etl.app import build_etl
    from tests.etl.support import RawLake, records

    settings = lake_settings.model_copy(update={"etl_full_listing_seconds": 0})
    raw = RawLake(settings)
    etl = build_etl(settings)
    scans = _count_curated_scans(monkeypatch)
    counts = []
    for seed in (51, 52, 53, 54):
        raw.put(records(300, seed, "2026-11-27T06:00:00Z", spread_seconds=3000))
        etl.tick()
        assert etl.last_error is None
        catalog = open_catalog(settings, name=f"checker-{seed}")
        counts.append(sum(module.records_per_bucket(_stored(settings)).values()))
    # Rebuilt from the curated tables at the first fold only (the builder's start).
    assert len(scans) == 1
    builder = etl.on_commit[0].__self__.builder  # the FeatureStep's builder
    assert builder.status()["late_records"] == counts[-1] - counts[0] > 0
    assert builder.status()["rebuild_failures"] == 0
    stored = _stored(settings)
    services = sorted(set(stored.column("service").to_pylist()))
    assert len(services) > 3
    for service in services:
        _exact(
            settings,
            catalog,
            Partition(service, date(2026, 11, 27), 6),
            datetime(2100, 1, 1, tzinfo=UTC),
        )
    # One commit per fold, and each closed hour partition is one file.
    table = catalog.load_table(FEATURES_TABLE)
    assert len(table.snapshots()) == 4
    partitions = table.inspect.files().column("partition").to_pylist()
    assert len(partitions) == len(services)


def test_a_restart_catches_up_what_the_last_process_committed_but_did_not_write(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after a SIGKILL between the curated commit and the features commit: the rows are in
    the curated tables, the builder that was handed them is gone."""
    from stages.etl import features as module

    # One partition rebuilt per commit: the catch-up below takes two.
    monkeypatch.setattr(module, "_RESYNC_BATCH", 1)
    settings = settings.model_copy(
        update={"features_bucket_seconds": 10, "features_allowed_lateness_seconds": 30}
    )
    catalog = open_catalog(settings)
    tables = ensure_tables(catalog)
    first = FeatureBuilder(catalog, settings)
    first.after_commit(
        _commit_and_prime(tables, first, [_log(_stamp(s)) for s in (1, 11)]), _at(45)
    )
    assert _by_bucket(_stored(settings)) == {0: 1}  # bucket 10 still open (and in memory only)
    # Committed, never handed to a builder: an open bucket of this hour and a closed hour long
    # past (which no later commit touches).
    _commit_and_prime(tables, None, [_log(_stamp(15)), _log(_stamp(23))])
    old = Partition("auth-service", date(2026, 3, 1), 8)
    _commit_and_prime(tables, None, [_log("2026-03-01T08:30:00.000Z", "ERROR")])

    second = FeatureBuilder(open_catalog(settings, name="restarted"), settings)
    snapshots = len(catalog.load_table(FEATURES_TABLE).snapshots())
    report = second.tick(_at(70))
    assert not report.failed and set(report.rebuilt) == {PARTITION, old}
    assert len(catalog.load_table(FEATURES_TABLE).snapshots()) == snapshots + 2
    stored = _stored(settings)
    assert _by_bucket(stored.filter(pa.compute.equal(stored.column("hr"), 10))) == {
        0: 1,
        10: 2,
        20: 1,
    }
    _exact(settings, catalog, PARTITION, _at(40))
    _exact(settings, catalog, old, datetime(2100, 1, 1, tzinfo=UTC))
    # No bucket written twice, and a second start has nothing to catch up.
    snapshots = len(catalog.load_table(FEATURES_TABLE).snapshots())
    third = FeatureBuilder(open_catalog(settings, name="again"), settings)
    report = third.tick(_at(71))
    assert report.written == [] and not report.failed
    assert len(catalog.load_table(FEATURES_TABLE).snapshots()) == snapshots


def test_a_commit_refused_because_maintenance_expired_snapshots_is_redone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Maintenance's snapshot expiry (on the fold thread) lands between a features commit's load
    of the table and its catalog update: the catalog refuses the commit (Glue's VersionId),
    pyiceberg's transaction commits it again on the new metadata (a features commit is a snapshot
    producer), and the builder does not start over."""
    settings = settings.model_copy(
        update={"features_bucket_seconds": 10, "features_allowed_lateness_seconds": 30}
    )
    catalog = open_catalog(settings)
    tables = ensure_tables(catalog)
    builder = FeatureBuilder(catalog, settings)
    touched = _commit_and_prime(tables, builder, [_log(_stamp(s)) for s in (1, 11, 21)])
    assert not builder.after_commit(touched, _at(45)).failed  # bucket 0
    assert not builder.tick(_at(55)).failed  # bucket 10
    other = open_catalog(settings, name="maintenance")
    oldest = min(other.load_table(FEATURES_TABLE).snapshots(), key=lambda s: s.timestamp_ms)
    original = catalog.glue.update_table
    refused: list[int] = []

    def expire_first(**kwargs: Any) -> Any:
        if not refused:
            refused.append(1)
            table = other.load_table(FEATURES_TABLE)
            table.maintenance.expire_snapshots().by_ids([oldest.snapshot_id]).commit()
        return original(**kwargs)

    monkeypatch.setattr(catalog.glue, "update_table", expire_first)
    report = builder.tick(_at(65))  # bucket 20
    assert refused and not report.failed and report.rebuilt == []
    assert builder.status()["rebuild_failures"] == 0
    table = other.load_table(FEATURES_TABLE)
    assert oldest.snapshot_id not in {s.snapshot_id for s in table.snapshots()}
    assert len(table.snapshots()) == 2
    assert _by_bucket(_stored(settings)) == {0: 1, 10: 1, 20: 1}

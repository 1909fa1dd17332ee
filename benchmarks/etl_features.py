"""What computing ``telemetry.features`` costs, and what a feature row weighs.

    .venv/bin/python -m benchmarks.etl_features [--records 360000] [--repeat 3] [--folds 360]
        [--no-emulator]

Makes one hour of records with Stage 00's generator in-process (``--records`` spread evenly over
the hour: 360,000 is 100 records/s; logs, metrics and APM spans of every service, 5 % anomalous),
types them as the ETL does, and reports:

- computation rate in records/s per core: CPU time of ``stages.etl.features.compute_features`` over
  the whole hour (best of ``--repeat``), and of one (service, hour) partition, which is what one
  rebuild computes;
- rows and bytes per feature row: Parquet zstd-3 in one file per (service, dt, hr) partition;
- unless ``--no-emulator``: on a private emulator (a free port), the curated tables are filled
  with the hour and a ``FeatureBuilder`` that starts then rebuilds every partition from them (the
  wall and CPU time per partition of a start), with the rows it keeps in memory and the bytes per
  row of the data files the features table really holds; then (``--folds``, 0 to skip) the hour
  is handed to a new builder in folds in time order, as the ETL's fold hands over its rows in
  live mode, and the CPU of the features step per record is printed, with the table checked
  against ``compute_features`` of the hour.
"""

from __future__ import annotations

import argparse
import io
import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.common import machine_info
from stages.common.config import Settings
from stages.common.runtime import tune_garbage_collector
from stages.etl.features import (
    ARROW_SCHEMA,
    FEATURES_TABLE,
    SORT_KEYS,
    FeatureBuilder,
    compute_features,
)
from stages.etl.tables import ensure_tables, open_catalog
from stages.etl.typing import KINDS, type_jsonl
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import MAX_COUNT, SynthesizeRequest

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)


def hour_of_records(records: int) -> list[dict[str, Any]]:
    pool = EntityPool()
    out: list[dict[str, Any]] = []
    requests = -(-records // MAX_COUNT)
    slice_seconds = 3600 / requests
    for seed in range(requests):
        count = min(MAX_COUNT, records - len(out))
        start = HOUR + timedelta(seconds=seed * slice_seconds)
        request = SynthesizeRequest.model_validate(
            {
                "count": count,
                "seed": seed,
                "timestamp": start.isoformat().replace("+00:00", "Z"),
                "spread_seconds": slice_seconds,
                "anomalous_share": 0.05,
            }
        )
        out += synthesize(request, pool).records
    return out


def best_cpu(repeat: int, work: Any) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.process_time()
        result = work()
        best = min(best, time.process_time() - started)
    return best, result


def parquet_bytes(features: pa.Table) -> int:
    total = 0
    keys = features.select(["service", "dt", "hr"]).group_by(["service", "dt", "hr"]).aggregate([])
    for service, dt, hr in zip(*(keys[c].to_pylist() for c in keys.column_names), strict=True):
        mask = pc.and_(
            pc.and_(pc.equal(features["service"], service), pc.equal(features["dt"], dt)),
            pc.equal(features["hr"], hr),
        )
        buffer = io.BytesIO()
        pq.write_table(features.filter(mask), buffer, compression="zstd", compression_level=3)
        total += buffer.tell()
    return total


def _slice(table: pa.Table, first: datetime, last: datetime) -> pa.Table:
    ts = table.column("timestamp")
    return table.filter(pc.and_(pc.greater_equal(ts, first), pc.less(ts, last)))


def _timed(builder: FeatureBuilder, touched: list[Any], now: datetime) -> tuple[float, float, Any]:
    started, cpu_started = time.perf_counter(), time.process_time()
    report = builder.after_commit(touched, now)
    assert not report.failed, report.failed
    return time.perf_counter() - started, time.process_time() - cpu_started, report


def _kept(builder: FeatureBuilder) -> tuple[int, int]:
    """Bytes and rows of the curated input rows the builder keeps in memory."""
    tables = [
        t
        for state in builder._states.values()
        for rows in (state.closed_rows or {}, state.open_rows)
        for parts in rows.values()
        for t in parts
    ]
    return sum(t.nbytes for t in tables), sum(t.num_rows for t in tables)


def on_emulator(typed: dict[str, pa.Table], services: list[str], commits: int) -> None:
    """The hour goes into the curated tables as ``commits`` appends; a builder that starts then
    rebuilds every partition from them (what a start costs)."""
    from tests.support.processes import start_emulator

    with tempfile.TemporaryDirectory() as logs:
        emulator, endpoint = start_emulator(Path(logs))
        try:
            settings = Settings(aws_endpoint_url=endpoint, aws_default_region="us-east-1")
            catalog = open_catalog(settings)
            tables = ensure_tables(catalog)
            step = timedelta(hours=1) / commits
            for i in range(commits):
                for kind in KINDS:
                    tables[kind].append(_slice(typed[kind], HOUR + i * step, HOUR + (i + 1) * step))
            builder = FeatureBuilder(catalog, settings)
            touched = [("logs", s, HOUR.date(), HOUR.hour) for s in services]
            now = HOUR + timedelta(hours=1, seconds=40)
            wall, cpu, report = _timed(builder, touched, now)
            n = len(report.rebuilt)
            print(
                f"emulator, a start: every (service, hour) rebuilt from the curated tables "
                f"({commits} files per curated table; Iceberg scan + compute + one commit): "
                f"{wall / n:.3f} s wall, {cpu / n:.3f} s CPU per partition (mean of {n})"
            )
            kept, records = _kept(builder)
            print(
                f"curated rows kept in memory for late records: {kept:,} bytes for {records:,} "
                f"records = {kept / records:.1f} bytes per record"
            )
            files = catalog.load_table(FEATURES_TABLE).inspect.files()
            rows = sum(files["record_count"].to_pylist())
            size = sum(files["file_size_in_bytes"].to_pylist())
            print(
                f"features table: {rows:,} rows in {len(files)} data files, {size:,} bytes = "
                f"{size / rows:.1f} bytes per row"
            )
        finally:
            emulator.stop()


def live_folds(typed: dict[str, pa.Table], folds: int, bucket_seconds: int) -> None:
    """The hour handed to a builder in ``folds`` folds in time order, as the ETL's fold hands
    over each commit's rows in live mode (each fold at its slice's end): CPU of the features
    step (prime + the call: closing buckets computed from the rows in memory, one fast append
    per fold) per record, and the table checked against ``compute_features`` of the hour."""
    from tests.support.processes import start_emulator

    with tempfile.TemporaryDirectory() as logs:
        emulator, endpoint = start_emulator(Path(logs))
        try:
            settings = Settings(
                aws_endpoint_url=endpoint,
                aws_default_region="us-east-1",
                features_bucket_seconds=bucket_seconds,
            )
            catalog = open_catalog(settings)
            ensure_tables(catalog)
            builder = FeatureBuilder(catalog, settings)
            # Started before the hour's data: its first call finds the curated tables empty, so
            # every partition is new (nothing to rebuild from them).
            builder.tick(HOUR)
            step = timedelta(hours=1) / folds
            cpu = wall = 0.0
            records = 0
            for i in range(folds):
                first, last = HOUR + i * step, HOUR + (i + 1) * step
                files = []
                for kind in KINDS:
                    rows = _slice(typed[kind], first, last)
                    service = pc.cast(rows["service"], pa.string())
                    for name in pc.unique(service).to_pylist():
                        part = rows.filter(pc.equal(service, name))
                        files.append((kind, f"s3://bench/{kind}/{name}/{i}.parquet", part))
                        records += part.num_rows
                touched = [
                    (kind, t["service"][0].as_py(), HOUR.date(), HOUR.hour) for kind, _, t in files
                ]
                started, cpu_started = time.perf_counter(), time.process_time()
                builder.prime(files)
                report = builder.after_commit(touched, last)
                cpu += time.process_time() - cpu_started
                wall += time.perf_counter() - started
                assert not report.failed, report.failed
            # The last buckets close once their watermark passes.
            started, cpu_started = time.perf_counter(), time.process_time()
            builder.tick(
                HOUR
                + timedelta(
                    hours=1, seconds=settings.features_allowed_lateness_seconds + bucket_seconds
                )
            )
            cpu += time.process_time() - cpu_started
            wall += time.perf_counter() - started
            table = catalog.load_table(FEATURES_TABLE)
            stored = table.scan().to_arrow().select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)
            expected = compute_features(typed, bucket_seconds)
            same = stored.sort_by(SORT_KEYS).equals(expected)
            print(
                f"live folds: {records:,} records in {folds} folds of {step.total_seconds():g} s "
                f"(time order, each at its slice's end); features step {cpu:.3f} s CPU = "
                f"{cpu / records * 1e6:.2f} us per record ({folds / cpu:,.1f} folds/s per core), "
                f"{wall:.1f} s wall; {len(table.snapshots())} commits, "
                f"{len(table.inspect.files())} data files at the end; table = compute_features "
                f"of the hour: {'yes' if same else 'NO'}"
            )
            if not same:
                got = {
                    (r["service"], r["signal"], r["name"], r["bucket_start"]): r
                    for r in stored.to_pylist()
                }
                want = {
                    (r["service"], r["signal"], r["name"], r["bucket_start"]): r
                    for r in expected.to_pylist()
                }
                print("missing", len(want.keys() - got.keys()), list(want.keys() - got.keys())[:3])
                print("extra", len(got.keys() - want.keys()), list(got.keys() - want.keys())[:3])
                diff = [k for k in want.keys() & got.keys() if want[k] != got[k]]
                print("differ", len(diff), [(want[k], got[k]) for k in diff[:2]])
                raise SystemExit("the incremental table differs from compute_features")
        finally:
            emulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.etl_features", description=__doc__)
    parser.add_argument("--records", type=int, default=360_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bucket-seconds", type=int, default=10)
    parser.add_argument("--no-emulator", action="store_true")
    parser.add_argument("--commits", type=int, default=12, help="appends the hour is split in")
    parser.add_argument(
        "--folds",
        type=int,
        default=360,
        help="folds the hour is handed to the builder in, in time order (live mode); 0: skip",
    )
    args = parser.parse_args(argv)
    # pyiceberg warns once per append that Arrow dictionaries are read back as strings.
    logging.getLogger("pyiceberg").setLevel(logging.ERROR)

    records = hour_of_records(args.records)
    tune_garbage_collector()
    typed = type_jsonl(b"\n".join(orjson.dumps(r) for r in records)).tables
    n = sum(t.num_rows for t in typed.values())
    cpu, features = best_cpu(args.repeat, lambda: compute_features(typed, args.bucket_seconds))

    services = sorted({str(s) for s in typed["log"].column("service").to_pylist()})
    service = max(services, key=lambda s: sum(r["service"] == s for r in records))
    one = {
        kind: t.filter(pc.equal(pc.cast(t["service"], pa.string()), service))
        for kind, t in typed.items()
    }
    one_n = sum(t.num_rows for t in one.values())
    one_cpu, _ = best_cpu(args.repeat, lambda: compute_features(one, args.bucket_seconds))

    size = parquet_bytes(features)
    by_signal = features.group_by("signal").aggregate([([], "count_all")]).to_pylist()
    signals = ", ".join(f"{s['signal']} {s['count_all']:,}" for s in by_signal)
    print(f"machine: {machine_info()}")
    print(
        f"hour: {n:,} records ({', '.join(f'{k} {t.num_rows:,}' for k, t in typed.items())}), "
        f"{len(services)} services, {args.bucket_seconds} s buckets"
    )
    print(
        f"compute_features, whole hour: {cpu:.3f} s CPU = {n / cpu:,.0f} records/s per core "
        f"-> {features.num_rows:,} feature rows "
        f"({signals})"
    )
    print(
        f"compute_features, one partition ({service}, {one_n:,} records): {one_cpu:.3f} s CPU "
        f"= {one_n / one_cpu:,.0f} records/s per core"
    )
    print(
        f"parquet zstd-3, one file per (service, dt, hr): {size:,} bytes = "
        f"{size / features.num_rows:.1f} bytes per feature row"
    )
    if not args.no_emulator:
        on_emulator(typed, services, args.commits)
        if args.folds:
            live_folds(typed, args.folds, args.bucket_seconds)


if __name__ == "__main__":
    main()

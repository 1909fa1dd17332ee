"""What one fold of the ETL service costs per record, from raw JSONL objects to committed Iceberg.

    .venv/bin/python -m benchmarks.etl_fold [--records 100000] [--object-records 35] [--gzip]
    .venv/bin/python -m benchmarks.etl_fold --quick
    .venv/bin/python -m benchmarks.etl_fold --profile fold.prof   # cProfile of the fold

Makes one closed hour of raw data with Stage 00's generator in-process (``benchmarks.etl``'s
hour: 70 % logs, 20 % metrics, 10 % spans), puts it on a private emulator subprocess in the
consumer's layout and encoding (objects of ``--object-records`` records per stream and
(service, hour) partition, plain JSONL as the consumer writes by default, gzip with ``--gzip``),
builds the ETL exactly as the service does (``stages.etl.app.build_etl``: lease, committer,
features step, maintenance), takes the writer lease, and times one ``Etl.fold_once()``:
listing, every GET, typing, the commits and the features step that runs after them.

It prints the CPU of this process (``time.process_time``: every thread of it, one core's work
whatever else the machine does) per record and in records/s per core, the emulator's CPU for the
same fold (psutil, user + system), the wall time and objects/s, and checks that every record is
in its table once. ``--startup-rows N`` then grows the tables to N rows and times how a new ETL
process learns which objects they hold, the cost every start and lease takeover pays: scanning
every table's ``source_key`` column, against ``Committer.load_held`` from the checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gzip
import io
import logging
import pstats
import shutil
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import NoSuchTableError

from benchmarks.common import machine_info
from benchmarks.etl import HOUR
from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.lake import hour_path, object_key, service_partition
from stages.common.lakehouse import FEATURES_TABLE
from stages.common.runtime import reclaim_memory, tune_garbage_collector
from stages.etl import committer as committer_module
from stages.etl import fold as fold_module
from stages.etl.app import build_etl
from stages.etl.tables import TABLE_NAMES
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import MAX_COUNT, SynthesizeRequest
from tests.support.processes import start_emulator

RERUN = "python -m benchmarks.etl_fold"


def hour_of_records(records: int, start: datetime) -> list[dict[str, Any]]:
    """``records`` generator records over the hour from ``start``, in consecutive slices (as
    ``benchmarks.etl.one_hour`` makes them)."""
    pool = EntityPool()
    requests = -(-records // MAX_COUNT)
    slice_seconds = 3600 / requests
    out: list[dict[str, Any]] = []
    for seed in range(requests):
        body = {
            "count": min(MAX_COUNT, records - len(out)),
            "seed": seed,
            "timestamp": (start + timedelta(seconds=seed * slice_seconds))
            .isoformat()
            .replace("+00:00", "Z"),
            "spread_seconds": slice_seconds,
            "anomalous_share": 0.05,
        }
        out += synthesize(SynthesizeRequest.model_validate(body), pool).records
    return out


def raw_uploads(
    settings: Settings, records: list[dict[str, Any]], per_object: int, gzip_it: bool
) -> list[tuple[str, str, bytes]]:
    """The consumer's objects of the hour: (bucket, key, body), in key order per partition."""
    lines: dict[tuple[str, str, str], list[bytes]] = defaultdict(list)
    for record in records:
        ts = record["timestamp"]
        hour = hour_path(int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]))
        lines[(record["kind"], record["service"], hour)].append(orjson.dumps(record))
    uploads: list[tuple[str, str, bytes]] = []
    sequence = 0
    for (kind, service, hour), partition_lines in sorted(lines.items()):
        spec = resources.stream_for_kind(settings, kind)
        partition = service_partition(service, hour)
        for start in range(0, len(partition_lines), per_object):
            chunk = partition_lines[start : start + per_object]
            key = object_key(
                partition,
                spec.name,
                "shardId-000000000000",
                str(sequence),
                str(sequence + len(chunk) - 1),
                "gzip" if gzip_it else "none",
            )
            sequence += len(chunk)
            body = b"\n".join(chunk) + b"\n"
            uploads.append((spec.bucket, key, gzip.compress(body, 6) if gzip_it else body))
    return uploads


def put(settings: Settings, uploads: list[tuple[str, str, bytes]]) -> None:
    s3 = aws.client("s3", settings)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda u: s3.put_object(Bucket=u[0], Key=u[1], Body=u[2]), uploads))


def rows_per_table(settings: Settings) -> dict[str, tuple[int, int]]:
    """(rows, distinct event ids) of every data table."""
    from stages.etl.tables import open_catalog

    catalog = open_catalog(settings, name="bench-check")
    out = {}
    for kind in ("log", "metric", "apm"):
        table = catalog.load_table(f"telemetry.{TABLE_NAMES[kind]}")
        ids = table.scan(selected_fields=("event_id",)).to_arrow().column("event_id")
        out[kind] = (len(ids), len(set(ids.to_pylist())))
    return out


class _Timed:
    """A commit callback that adds up the CPU and wall time of the callback it wraps."""

    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.cpu = 0.0
        self.wall = 0.0

    def __call__(self, info: Any) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            self.callback(info)
        finally:
            self.cpu += time.process_time() - cpu
            self.wall += time.perf_counter() - wall


class _Wrapped(_Timed):
    """An attribute of ``owner`` replaced by a timed call of itself, until ``undo``."""

    def __init__(self, owner: Any, name: str) -> None:
        super().__init__(getattr(owner, name))
        self.owner, self.name = owner, name
        setattr(owner, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cpu = time.process_time()
        try:
            return self.callback(*args, **kwargs)
        finally:
            self.cpu += time.process_time() - cpu

    def undo(self) -> None:
        setattr(self.owner, self.name, self.callback)


def _wrap(owner: Any, name: str) -> _Wrapped:
    return _Wrapped(owner, name)


def _timed(call: Any) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    value = call()
    return value, time.process_time() - cpu, time.perf_counter() - wall


def measure_startup(settings: Settings, etl: Any, rows: int) -> dict[str, Any]:
    """Grow the tables to ``rows`` rows (copies of the folded rows under new source keys, one
    commit per table per copy), checkpoint the source keys, then time what a new process does
    to learn them: the full scan of every table's ``source_key`` column, and ``load_held``."""
    committer = etl.committer
    base = {kind: committer.reload(kind).scan().to_arrow() for kind in ("log", "metric", "apm")}
    total = sum(t.num_rows for t in base.values())
    copy = 0
    while total < rows:
        copy += 1
        for kind, table in base.items():
            keys = pc.binary_join_element_wise(
                table.column("source_key").cast(pa.string()), f"-copy{copy}", ""
            )
            committer.append_new(
                kind,
                [table.set_column(table.schema.get_field_index("source_key"), "source_key", keys)],
            )
            total += table.num_rows
    _, save_cpu, save_wall = _timed(committer.save_held)
    fresh = build_etl(settings.model_copy(update={"etl_worker_id": "bench-second"})).committer
    fresh.open()
    scanned, scan_cpu, scan_wall = _timed(
        lambda: {kind: fresh.source_keys(fresh.reload(kind)) for kind in fresh.tables}
    )
    _, load_cpu, load_wall = _timed(fresh.load_held)
    assert scanned == fresh.held, "the checkpoint and the scan disagree"
    return {
        "rows": total,
        "keys": sum(len(keys) for keys in fresh.held.values()),
        "save": (save_cpu, save_wall),
        "scan": (scan_cpu, scan_wall),
        "load": (load_cpu, load_wall),
    }


def fold(
    settings: Settings,
    batches: list[list[tuple[str, str, bytes]]],
    emulator_pid: int,
    profile: str | None,
    startup_rows: int,
) -> dict[str, Any]:
    """Put each batch of objects on the emulator, then time one ``fold_once()`` of it."""
    etl = build_etl(settings)
    # The service's only commit callback is the features step: timed on its own as well.
    timed = [_Timed(callback) for callback in etl.on_commit]
    etl.on_commit[:] = timed
    # Where the fold's CPU goes: each step wrapped where it is called from.
    steps = {
        "listing": _wrap(etl, "list_objects"),
        "GETs + typing": _wrap(etl, "_read_and_type"),
        "typing": _wrap(fold_module, "type_group"),
        "commits (files, manifests, catalog)": _wrap(etl.committer, "append_new"),
        "Parquet files": _wrap(committer_module, "write_data_files"),
    }
    assert etl.ensure_lease(), "the benchmark's ETL did not get the writer lease"
    server = psutil.Process(emulator_pid)
    profiler = cProfile.Profile() if profile else None
    folds = []
    for batch in batches:
        put(settings, batch)
        steps_before = {name: step.cpu for name, step in steps.items()}
        features_before = sum(t.cpu for t in timed)
        server_before = sum(server.cpu_times()[:2])
        wall = time.perf_counter()
        cpu = time.process_time()
        if profiler:
            profiler.enable()
        result = etl.fold_once()
        if profiler:
            profiler.disable()
        folds.append(
            {
                "objects": result.objects,
                "records": sum(v for k, v in result.rows.items() if k != "quarantine"),
                "cpu": time.process_time() - cpu,
                "wall": time.perf_counter() - wall,
                "emulator_cpu": sum(server.cpu_times()[:2]) - server_before,
                "features_cpu": sum(t.cpu for t in timed) - features_before,
                "steps": {name: step.cpu - steps_before[name] for name, step in steps.items()},
            }
        )
    out: dict[str, Any] = {
        "folds": folds,
        "steps": {name: step.cpu for name, step in steps.items()},
    }
    for step in steps.values():
        step.undo()
    if profiler and profile:
        profiler.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        out["profile"] = text.getvalue()
    out["landed"] = rows_per_table(settings)
    if startup_rows:
        out["startup"] = measure_startup(settings, etl, startup_rows)
    etl.lease.release()
    return out


def refold(
    settings: Settings, emulator_pid: int, repeats: int, reclaim: bool = False
) -> list[dict[str, Any]]:
    """Fold the same raw objects again ``repeats`` times, each time into fresh tables (the
    curated and features tables dropped from the catalog) by a new ETL built as the service
    builds it: the spread of these folds, and their best, say what a fold costs on a machine
    whose load changes from second to second. With ``reclaim``, each refold follows one round
    of the service's memory reclaim (a collection and ``malloc_trim``), as a fold of the running
    service follows the rounds made since the last one: its freed heap pages are gone again."""
    from stages.etl.tables import open_catalog

    catalog = open_catalog(settings, name="bench-refold")
    out = []
    for _ in range(repeats):
        for identifier in [f"telemetry.{name}" for name in TABLE_NAMES.values()] + [FEATURES_TABLE]:
            with contextlib.suppress(NoSuchTableError):
                catalog.drop_table(identifier)
        if reclaim:
            reclaim_memory()
        measured = fold(settings, [[]], emulator_pid, None, 0)
        out.append(measured["folds"][0] | {"landed": measured["landed"]})
    return out


def _report(label: str, folds: list[dict[str, Any]]) -> None:
    n = sum(f["records"] for f in folds)
    objects = sum(f["objects"] for f in folds)
    cpu, server, wall = (sum(f[k] for f in folds) for k in ("cpu", "emulator_cpu", "wall"))
    features = sum(f["features_cpu"] for f in folds)
    print(
        f"{label}: {n:,} records in {objects:,} objects; ETL process {cpu:.3f} s CPU = "
        f"{n / cpu:,.0f} records/s per core ({cpu / n * 1e6:.1f} us per record, of which the "
        f"features step {features / n * 1e6:.1f}); emulator {server:.3f} s CPU "
        f"({server / n * 1e6:.1f} us per record), together {n / (cpu + server):,.0f} records/s "
        f"per core; wall {wall:.3f} s = {n / wall:,.0f} records/s, {objects / wall:,.0f} "
        f"objects/s"
    )
    # The fold itself (listing, GETs, typing, data files, commits): what the ETL process spends
    # on a record before the features step, which runs after the commits.
    fold_cpu = cpu - features
    print(
        f"  without the features step: {fold_cpu:.3f} s CPU = {n / fold_cpu:,.0f} records/s per "
        f"core ({fold_cpu / n * 1e6:.1f} us per record); steps (us per record): "
        + ", ".join(
            f"{name} {sum(f['steps'][name] for f in folds) / n * 1e6:.1f}"
            for name in folds[0]["steps"]
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=RERUN, description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--object-records", type=int, default=35)
    parser.add_argument("--gzip", action="store_true", help="gzip objects (.jsonl.gz)")
    parser.add_argument("--profile", help="write a cProfile of the fold here and print its top")
    parser.add_argument(
        "--startup-rows",
        type=int,
        default=0,
        help="after the fold, grow the tables to this many rows and time how a new process "
        "learns their source keys (full scan against load_held's checkpoint)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=1,
        help="split the objects into this many batches, each put and folded in turn: the "
        "first fold pays the start (features builder, first loads), the others are the "
        "steady state",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="records of the hour up to now instead of a closed hour long past: the features "
        "step keeps its partitions between folds as in live mode (with a past hour it loads "
        "them again at every fold, as for late data)",
    )
    parser.add_argument(
        "--refolds",
        type=int,
        default=0,
        help="afterwards, fold the same objects again this many times into fresh tables, each "
        "by a new ETL, and report the best and the spread (CPU under a changing load)",
    )
    parser.add_argument(
        "--reclaim",
        action="store_true",
        help="before each refold, one round of the service's memory reclaim (collection and "
        "malloc_trim), as between two folds of the running service",
    )
    parser.add_argument("--quick", action="store_true", help="3,000 records")
    args = parser.parse_args(argv)
    if args.quick:
        args.records = 3000
    if min(args.records, args.object_records, args.folds) < 1:
        parser.error("--records, --object-records and --folds must be positive")
    logging.getLogger("pyiceberg.io.pyarrow").setLevel(logging.ERROR)
    logging.getLogger("pyiceberg.io").setLevel(logging.WARNING)

    start = HOUR
    if args.live:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    records = hour_of_records(args.records, start)
    counts = {kind: 0 for kind in ("log", "metric", "apm")}
    for record in records:
        counts[record["kind"]] += 1
    work_dir = Path(tempfile.mkdtemp(prefix="etl-fold-bench-"))
    emulator, endpoint = start_emulator(work_dir)
    try:
        settings = Settings(
            aws_endpoint_url=endpoint,
            aws_default_region="us-east-1",
            etl_worker_id="bench",
            etl_full_listing_seconds=0,
        )
        uploads = raw_uploads(settings, records, args.object_records, args.gzip)
        objects = len(uploads)
        # Every partition gets objects in every batch, as when the consumer keeps writing.
        batches = [uploads[i :: args.folds] for i in range(args.folds)]
        # The collector settings every long-running process of the pipeline starts with.
        tune_garbage_collector()
        measured = fold(settings, batches, emulator.pid, args.profile, args.startup_rows)
        landed = measured["landed"]
        refolds = refold(settings, emulator.pid, args.refolds, args.reclaim) if args.refolds else []
    finally:
        emulator.stop()
        shutil.rmtree(work_dir, ignore_errors=True)

    n = len(records)
    print(f"machine: {machine_info()}")
    print(
        f"input: {n:,} records in one hour (from {start:%Y-%m-%d %H:%M:%S} UTC), {objects:,} "
        f"{'gzip' if args.gzip else 'plain'} objects of up to {args.object_records} records"
    )
    exact = all(
        got[kind] == (counts[kind], counts[kind])
        for got in [landed, *(f["landed"] for f in refolds)]
        for kind in counts
    )
    print(
        "landed: "
        + ", ".join(f"{TABLE_NAMES[k]} {landed[k][0]:,} rows of {counts[k]:,} sent" for k in counts)
        + f"; exactly once: {'yes' if exact else 'NO'}"
    )
    folds = measured["folds"]
    _report("fold 1" + (" (the first of the process)" if len(folds) > 1 else ""), folds[:1])
    if len(folds) > 1:
        _report(f"folds 2-{len(folds)} (steady state)", folds[1:])
        _report(f"all {len(folds)} folds", folds)
    if refolds:
        best = min(refolds, key=lambda f: f["cpu"] - f["features_cpu"])
        _report(f"refold, best of {len(refolds)} (fresh tables, a new ETL each)", [best])
        spread = sorted(f["records"] / (f["cpu"] - f["features_cpu"]) for f in refolds)
        print(
            "  refolds without the features step, records/s per core: "
            + ", ".join(f"{v:,.0f}" for v in spread)
        )
    print(
        "where the ETL process's CPU went, all folds (steps overlap: typing is part of the "
        "GETs + typing, Parquet files of the commits):"
    )
    for name, seconds in measured["steps"].items():
        print(f"  {name}: {seconds:.3f} s CPU ({seconds / n * 1e6:.1f} us per record)")
    if "startup" in measured:
        up = measured["startup"]
        print(
            f"startup, tables of {up['rows']:,} rows holding {up['keys']:,} source keys: "
            f"scanning every table's source_key column {up['scan'][0]:.3f} s CPU, "
            f"{up['scan'][1]:.3f} s wall; load_held from the checkpoint {up['load'][0]:.3f} s "
            f"CPU, {up['load'][1]:.3f} s wall (writing the checkpoint: {up['save'][0]:.3f} s "
            f"CPU, {up['save'][1]:.3f} s wall)"
        )
    if "profile" in measured:
        print(measured["profile"])
    print(
        f"rerun: {RERUN} --records {args.records} --object-records {args.object_records} "
        f"--folds {args.folds}"
        + (f" --refolds {args.refolds}" if args.refolds else "")
        + (" --reclaim" if args.reclaim else "")
        + (" --gzip" if args.gzip else "")
        + (" --live" if args.live else "")
    )
    if not exact:
        raise SystemExit("not every record landed exactly once")


if __name__ == "__main__":
    main()

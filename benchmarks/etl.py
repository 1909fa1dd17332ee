"""What the Stage 02 ETL costs per record, and what a record weighs in the curated tables.

    .venv/bin/python -m benchmarks.etl [--records 100000] [--repeat 3] [--object-records 50]
    .venv/bin/python -m benchmarks.etl --quick

Makes one closed hour of raw data with Stage 00's generator in-process (logs, metrics and APM
spans with their attributes and labels, 5 % anomalous; the hour is cut into consecutive slices,
one generator request each), and lays it out as the consumer does: gzip JSONL objects of
``--object-records`` records per stream and (service, hour) partition, under the consumer's keys.
Then it measures, on this process's CPU clock (one core's work, whatever else the machine does):

(a) inflating and typing: ``stages.etl.typing.type_objects`` over each partition's objects
    (one call per partition, as the ETL types a run), in records/s per core, best of
    ``--repeat``; next to it the CPU of inflating alone, with zlib and with ISA-L (``isal``);
(b) typing and committing: the same, then Iceberg appends (rows in
    ``stages.etl.tables.in_write_order``) to the tables of a real emulator subprocess through
    ``open_catalog``/``ensure_tables``: one commit per table holding every partition of the run
    (one file each), or with ``--append-per partition`` one commit per partition; records/s per
    core of this process, and the emulator's CPU for the same appends beside it;
(c) the tables' bytes per record after (b), which wrote the hour as one file per partition:
    the layout compaction leaves; and the average file size.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import shutil
import tempfile
import time
import zlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import pyarrow as pa
from isal import isal_zlib

from benchmarks.common import machine_info
from stages.common.config import Settings
from stages.common.lake import hour_of, object_key, service_partition
from stages.common.runtime import tune_garbage_collector
from stages.etl.tables import ensure_tables, in_write_order, open_catalog
from stages.etl.typing import KINDS, RawPartition, type_objects
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import MAX_COUNT, SynthesizeRequest
from tests.support.processes import start_emulator

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
STREAMS = {
    "log": "stage01-logs-stream",
    "metric": "stage01-metrics-stream",
    "apm": "stage01-apm-stream",
}
RERUN = "python -m benchmarks.etl"


def one_hour(records: int) -> list[dict[str, Any]]:
    """``records`` generator records over ``HOUR``, in consecutive slices of the hour."""
    pool = EntityPool()
    requests = -(-records // MAX_COUNT)
    slice_seconds = 3600 / requests
    out: list[dict[str, Any]] = []
    for seed in range(requests):
        count = min(MAX_COUNT, records - len(out))
        start = HOUR + timedelta(seconds=seed * slice_seconds)
        body = {
            "count": count,
            "seed": seed,
            "timestamp": start.isoformat().replace("+00:00", "Z"),
            "spread_seconds": slice_seconds,
            "anomalous_share": 0.05,
        }
        out += synthesize(SynthesizeRequest.model_validate(body), pool).records
    return out


Partition = tuple[str, str]  # (kind, service)


def raw_objects(
    records: list[dict[str, Any]], per_object: int
) -> dict[Partition, list[tuple[str, bytes]]]:
    """The consumer's gzip objects of each (kind, service) partition of the hour, with keys."""
    lines: dict[Partition, list[bytes]] = defaultdict(list)
    for record in records:
        lines[(record["kind"], record["service"])].append(orjson.dumps(record))
    objects: dict[Partition, list[tuple[str, bytes]]] = {}
    sequence = 0
    for (kind, service), partition_lines in sorted(lines.items()):
        partition = service_partition(service, hour_of(HOUR))
        objects[(kind, service)] = []
        for start in range(0, len(partition_lines), per_object):
            chunk = partition_lines[start : start + per_object]
            key = object_key(
                partition,
                STREAMS[kind],
                "shardId-000000000000",
                str(sequence),
                str(sequence + len(chunk) - 1),
                "gzip",
            )
            sequence += len(chunk)
            body = gzip.compress(b"\n".join(chunk) + b"\n", 6)
            objects[(kind, service)].append((key, body))
    return objects


def _raw_partition(service: str) -> RawPartition:
    return RawPartition(service, date(HOUR.year, HOUR.month, HOUR.day), HOUR.hour)


def typing_cpu(objects: dict[Partition, list[tuple[str, bytes]]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for (_, service), partition_objects in objects.items():
            typed = type_objects(partition_objects, partition=_raw_partition(service))
            assert typed.quarantine.num_rows == 0
        best = min(best, time.process_time() - started)
    return best


def inflate_cpu(objects: dict[Partition, list[tuple[str, bytes]]], repeat: int) -> dict[str, float]:
    bodies = [body for partition in objects.values() for _, body in partition]
    out = {}
    for name, inflate in (("zlib", zlib.decompress), ("isal", isal_zlib.decompress)):
        best = float("inf")
        for _ in range(repeat):
            started = time.process_time()
            for body in bodies:
                inflate(body, 31)
            best = min(best, time.process_time() - started)
        out[name] = best
    return out


def commit(
    objects: dict[Partition, list[tuple[str, bytes]]], work_dir: Path, append_per: str
) -> dict[str, Any]:
    """(b) and (c): type and append every partition to a fresh emulator's tables."""
    emulator, endpoint = start_emulator(work_dir)
    try:
        settings = Settings(aws_endpoint_url=endpoint, aws_default_region="us-east-1")
        tables = ensure_tables(open_catalog(settings))
        server = psutil.Process(emulator.pid)
        server_before = sum(server.cpu_times()[:2])
        started = time.process_time()
        typed_records = 0
        appends = 0
        batches: dict[str, list[pa.Table]] = defaultdict(list)
        for (kind, service), partition_objects in objects.items():
            typed = type_objects(partition_objects, partition=_raw_partition(service))
            rows = typed.tables[kind]
            typed_records += rows.num_rows
            if append_per == "partition":
                tables[kind].append(in_write_order(kind, rows))
                appends += 1
            else:
                batches[kind].append(rows)
        for kind, parts in batches.items():
            # One commit for every partition of the run: pyiceberg writes a file per partition.
            tables[kind].append(in_write_order(kind, pa.concat_tables(parts).combine_chunks()))
            appends += 1
        own = time.process_time() - started
        server_cpu = sum(server.cpu_times()[:2]) - server_before
        sizes = {}
        for kind in KINDS:
            files = tables[kind].refresh().inspect.files()
            sizes[kind] = {
                "files": files.num_rows,
                "bytes": sum(files.column("file_size_in_bytes").to_pylist()),
                "records": sum(files.column("record_count").to_pylist()),
            }
        return {
            "records": typed_records,
            "appends": appends,
            "cpu": own,
            "emulator_cpu": server_cpu,
            "sizes": sizes,
        }
    finally:
        emulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=RERUN, description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--object-records", type=int, default=50)
    parser.add_argument(
        "--append-per",
        choices=("table", "partition"),
        default="table",
        help="one Iceberg commit per table for all its partitions (a run of the ETL), or one "
        "per partition",
    )
    parser.add_argument(
        "--arrow-threads",
        type=int,
        default=1,
        help="threads of Arrow's CPU pool, which pyiceberg uses to filter each partition out "
        "of an append (1 and 2 measured the same CPU per record on 2 cores)",
    )
    parser.add_argument("--quick", action="store_true", help="3,000 records, one repeat")
    args = parser.parse_args(argv)
    # pyiceberg says so for every dictionary column it writes; the tables hold plain strings.
    logging.getLogger("pyiceberg.io.pyarrow").setLevel(logging.ERROR)
    if args.quick:
        args.records, args.repeat = 3000, 1
    if min(args.records, args.repeat, args.object_records, args.arrow_threads) < 1:
        parser.error("--records, --repeat, --object-records and --arrow-threads must be positive")
    pa.set_cpu_count(args.arrow_threads)

    records = one_hour(args.records)
    objects = raw_objects(records, args.object_records)
    raw_bytes = {kind: 0 for kind in KINDS}
    gzip_bytes = {kind: 0 for kind in KINDS}
    counts = {kind: 0 for kind in KINDS}
    for record in records:
        counts[record["kind"]] += 1
        raw_bytes[record["kind"]] += len(orjson.dumps(record)) + 1
    for (kind, _), partition_objects in objects.items():
        gzip_bytes[kind] += sum(len(body) for _, body in partition_objects)
    object_count = sum(len(p) for p in objects.values())
    # The collector settings every long-running process of the pipeline starts with.
    tune_garbage_collector()

    typing = typing_cpu(objects, args.repeat)
    inflate = inflate_cpu(objects, args.repeat)
    work_dir = Path(tempfile.mkdtemp(prefix="etl-bench-"))
    try:
        committed = commit(objects, work_dir, args.append_per)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    n = len(records)
    assert committed["records"] == n, committed

    print(f"machine: {machine_info()}")
    print(
        f"input: {n:,} records in one hour ({HOUR:%Y-%m-%d %H}:00 UTC), {object_count:,} gzip "
        f"objects of up to {args.object_records} records in {len(objects)} partitions"
    )
    print(
        f"(a) inflate + typing: {typing:.3f} s CPU = {n / typing:,.0f} records/s per core "
        f"(inflating alone: zlib {inflate['zlib']:.3f} s, ISA-L {inflate['isal']:.3f} s CPU)"
    )
    own, server = committed["cpu"], committed["emulator_cpu"]
    print(
        f"(b) inflate + typing + Iceberg append ({committed['appends']} commits, one file per "
        f"partition): {own:.3f} s CPU = "
        f"{n / own:,.0f} records/s per core; emulator {server:.3f} s CPU; together "
        f"{n / (own + server):,.0f} records/s per core"
    )
    print("(c) stored bytes per record, one file per partition for the hour:")
    print(
        f"{'table':<8} {'records':>8} {'raw B/rec':>10} {'gzip B/rec':>11} {'parquet B/rec':>14} "
        f"{'files':>6} {'avg file KiB':>13}"
    )
    names = {"log": "logs", "metric": "metrics", "apm": "apm"}
    for kind in KINDS:
        size = committed["sizes"][kind]
        count = counts[kind]
        print(
            f"{names[kind]:<8} {count:>8,} {raw_bytes[kind] / count:>10.1f} "
            f"{gzip_bytes[kind] / count:>11.1f} {size['bytes'] / size['records']:>14.1f} "
            f"{size['files']:>6} {size['bytes'] / size['files'] / 1024:>13.1f}"
        )
    print(
        f"rerun: {RERUN} --records {args.records} --repeat {args.repeat} "
        f"--object-records {args.object_records} --append-per {args.append_per} "
        f"--arrow-threads {args.arrow_threads}"
    )


if __name__ == "__main__":
    main()

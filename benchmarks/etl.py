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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from isal import isal_zlib
from pyiceberg.table import Table

from benchmarks.common import machine_info
from stages.common.config import Settings
from stages.common.lake import hour_of, object_key, service_partition
from stages.common.runtime import tune_garbage_collector
from stages.etl.app import build_etl
from stages.etl.committer import combine
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


def one_hour(records: int) -> Iterator[list[dict[str, Any]]]:
    """``records`` generator records over ``HOUR``, one consecutive slice of the hour at a time
    (in time order), so an hour at 1,000 records/s is never all in memory as dicts."""
    pool = EntityPool()
    requests = -(-records // MAX_COUNT)
    slice_seconds = 3600 / requests
    made = 0
    for seed in range(requests):
        count = min(MAX_COUNT, records - made)
        start = HOUR + timedelta(seconds=seed * slice_seconds)
        body = {
            "count": count,
            "seed": seed,
            "timestamp": start.isoformat().replace("+00:00", "Z"),
            "spread_seconds": slice_seconds,
            "anomalous_share": 0.05,
        }
        batch = synthesize(SynthesizeRequest.model_validate(body), pool).records
        made += len(batch)
        yield sorted(batch, key=lambda r: r["timestamp"])


Partition = tuple[str, str]  # (kind, service)


@dataclass
class RawHour:
    """The consumer's gzip objects of each (kind, service) partition of the hour, with keys, and
    what the records weigh as JSON lines."""

    objects: dict[Partition, list[tuple[str, bytes]]] = field(default_factory=dict)
    lines: dict[Partition, list[int]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    raw_bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    sequence: int = 0

    def flush(self, kind: str, service: str, lines: list[bytes]) -> None:
        partition = service_partition(service, hour_of(HOUR))
        key = object_key(
            partition,
            STREAMS[kind],
            "shardId-000000000000",
            str(self.sequence),
            str(self.sequence + len(lines) - 1),
            "gzip",
        )
        self.sequence += len(lines)
        body = gzip.compress(b"\n".join(lines) + b"\n", 6)
        self.objects.setdefault((kind, service), []).append((key, body))
        self.lines[(kind, service)].append(len(lines))


def raw_objects(records: int, per_object: int, object_seconds: float | None) -> RawHour:
    """The hour's records cut into objects as the consumer cuts them: per (stream, service),
    ``per_object`` records each, or with ``object_seconds`` every ``object_seconds`` of event
    time (the consumer flushes a partition's buffer at least every FLUSH_MAX_AGE_SECONDS, one
    second by default, so at a steady rate an object holds about a second of a partition)."""
    hour = RawHour()
    open_lines: dict[Partition, list[bytes]] = defaultdict(list)
    open_window: dict[Partition, int] = {}
    for batch in one_hour(records):
        for record in batch:
            kind, service = record["kind"], record["service"]
            line = orjson.dumps(record)
            hour.counts[kind] += 1
            hour.raw_bytes[kind] += len(line) + 1
            partition = (kind, service)
            lines = open_lines[partition]
            if object_seconds is not None:
                seconds = datetime.fromisoformat(record["timestamp"]).timestamp()
                window = int(seconds // object_seconds)
                if lines and open_window[partition] != window:
                    hour.flush(kind, service, lines)
                    lines.clear()
                open_window[partition] = window
            lines.append(line)
            if object_seconds is None and len(lines) >= per_object:
                hour.flush(kind, service, lines)
                lines.clear()
    for (kind, service), lines in sorted(open_lines.items()):
        if lines:
            hour.flush(kind, service, lines)
    hour.objects = dict(sorted(hour.objects.items()))
    return hour


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


def with_sources(rows: pa.Table, keys: list[str], lines: list[int]) -> pa.Table:
    """``rows`` (every line of the objects ``keys``, in order) with the ``source_key`` column the
    ETL adds: each row names its object, as ``stages.etl.committer.with_source`` does."""
    indices = pa.array(np.repeat(np.arange(len(keys), dtype=np.int32), lines))
    return rows.append_column(
        "source_key", pa.DictionaryArray.from_arrays(indices, pa.array(keys, pa.string()))
    )


def table_sizes(table: Table) -> dict[str, Any]:
    """Files, bytes, records and bytes per column (Parquet column chunks, compressed) of the
    current snapshot of ``table``."""
    files = table.refresh().inspect.files()
    paths = files.column("file_path").to_pylist()
    columns: dict[str, int] = defaultdict(int)
    for path in paths:
        with table.io.new_input(path).open() as stream:
            footer = pq.read_metadata(stream)
        for group in range(footer.num_row_groups):
            row_group = footer.row_group(group)
            for index in range(row_group.num_columns):
                chunk = row_group.column(index)
                columns[chunk.path_in_schema] += chunk.total_compressed_size
    return {
        "files": len(paths),
        "bytes": sum(files.column("file_size_in_bytes").to_pylist()),
        "records": sum(files.column("record_count").to_pylist()),
        "columns": dict(columns),
    }


def commit(hour: RawHour, work_dir: Path, append_per: str) -> dict[str, Any]:
    """(b), (c) and (d): type and append every partition to a fresh emulator's tables, then
    compact the (closed) hour with the ETL's own maintenance step."""
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
        for (kind, service), partition_objects in hour.objects.items():
            typed = type_objects(partition_objects, partition=_raw_partition(service))
            keys = [key for key, _ in partition_objects]
            rows = with_sources(typed.tables[kind], keys, hour.lines[(kind, service)])
            typed_records += rows.num_rows
            if append_per == "partition":
                tables[kind].append(in_write_order(kind, rows))
                appends += 1
            else:
                batches[kind].append(rows)
        for kind, parts in batches.items():
            # One commit for every partition of the run: pyiceberg writes a file per partition.
            tables[kind].append(in_write_order(kind, combine(parts)))
            appends += 1
        own = time.process_time() - started
        server_cpu = sum(server.cpu_times()[:2]) - server_before
        appended = {kind: table_sizes(tables[kind]) for kind in KINDS}

        # (d) the ETL's compaction of the hour, closed since HOUR is in the past.
        etl = build_etl(settings.model_copy(update={"etl_worker_id": "benchmark"}))
        if not etl.ensure_lease():
            raise RuntimeError("the benchmark's ETL could not take the writer lease")
        server_before = sum(server.cpu_times()[:2])
        started = time.process_time()
        compacted = {kind: etl.maintenance.compact(kind, datetime.now(UTC)) for kind in KINDS}
        compact_cpu = time.process_time() - started
        compact_server = sum(server.cpu_times()[:2]) - server_before
        etl.lease.release()
        after = {kind: table_sizes(tables[kind]) for kind in KINDS}
        return {
            "records": typed_records,
            "appends": appends,
            "cpu": own,
            "emulator_cpu": server_cpu,
            "appended": appended,
            "compacted_partitions": compacted,
            "compact_cpu": compact_cpu,
            "compact_emulator_cpu": compact_server,
            "sizes": after,
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
    parser.add_argument(
        "--object-seconds",
        type=float,
        default=None,
        help="cut objects by this many seconds of event time per partition (the consumer's "
        "flush age) instead of by --object-records",
    )
    parser.add_argument(
        "--columns", action="store_true", help="(c) also prints bytes per record per column"
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

    if args.object_seconds is not None and args.object_seconds <= 0:
        parser.error("--object-seconds must be positive")
    pa.set_cpu_count(args.arrow_threads)

    hour = raw_objects(args.records, args.object_records, args.object_seconds)
    objects = hour.objects
    gzip_bytes = dict.fromkeys(KINDS, 0)
    for (kind, _), partition_objects in objects.items():
        gzip_bytes[kind] += sum(len(body) for _, body in partition_objects)
    object_count = sum(len(p) for p in objects.values())
    # The collector settings every long-running process of the pipeline starts with.
    tune_garbage_collector()

    typing = typing_cpu(objects, args.repeat)
    inflate = inflate_cpu(objects, args.repeat)
    work_dir = Path(tempfile.mkdtemp(prefix="etl-bench-"))
    try:
        committed = commit(hour, work_dir, args.append_per)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    n = sum(hour.counts.values())
    assert committed["records"] == n, committed

    cut = (
        f"{args.object_seconds:g} s of event time"
        if args.object_seconds is not None
        else f"up to {args.object_records} records"
    )
    print(f"machine: {machine_info()}")
    print(
        f"input: {n:,} records in one hour ({HOUR:%Y-%m-%d %H}:00 UTC), {object_count:,} gzip "
        f"objects of {cut} in {len(objects)} partitions"
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
    partitions = sum(committed["compacted_partitions"].values())
    print(
        f"(d) compaction of the closed hour ({partitions} partitions rewritten): "
        f"{committed['compact_cpu']:.3f} s CPU, emulator {committed['compact_emulator_cpu']:.3f} "
        f"s CPU"
    )
    print(
        "(c) stored bytes per record: as appended by (b) (pyiceberg's writer, one file per "
        "partition), and after (d)'s compaction:"
    )
    print(
        f"{'table':<8} {'records':>9} {'raw B/rec':>10} {'gzip B/rec':>11} "
        f"{'appended B/rec':>15} {'compacted B/rec':>16} {'files':>6} {'avg file KiB':>13}"
    )
    names = {"log": "logs", "metric": "metrics", "apm": "apm"}
    for kind in KINDS:
        before, size = committed["appended"][kind], committed["sizes"][kind]
        count = hour.counts[kind]
        assert size["records"] == count, (kind, size, count)
        print(
            f"{names[kind]:<8} {count:>9,} {hour.raw_bytes[kind] / count:>10.1f} "
            f"{gzip_bytes[kind] / count:>11.1f} {before['bytes'] / before['records']:>15.1f} "
            f"{size['bytes'] / size['records']:>16.1f} "
            f"{size['files']:>6} {size['bytes'] / size['files'] / 1024:>13.1f}"
        )
    if args.columns:
        print("(c) bytes per record per column after compaction (column chunks, compressed):")
        for kind in KINDS:
            size = committed["sizes"][kind]
            columns = sorted(size["columns"].items(), key=lambda item: -item[1])
            print(
                f"  {names[kind]}: "
                + ", ".join(
                    f"{name} {total / size['records']:.2f}"
                    for name, total in columns
                    if total / size["records"] >= 0.01
                )
            )
    seconds = f" --object-seconds {args.object_seconds:g}" if args.object_seconds else ""
    print(
        f"rerun: {RERUN} --records {args.records} --repeat {args.repeat} "
        f"--object-records {args.object_records}{seconds} --append-per {args.append_per} "
        f"--arrow-threads {args.arrow_threads}{' --columns' if args.columns else ''}"
    )


if __name__ == "__main__":
    main()

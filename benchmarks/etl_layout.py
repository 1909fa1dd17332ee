"""Bytes per record of the curated tables' Parquet files at a given density, per column.

    .venv/bin/python -m benchmarks.etl_layout --records 3600000   # an hour at 1,000 records/s
    .venv/bin/python -m benchmarks.etl_layout --quick             # 20,000 records

Makes one hour of Stage 00's records (``benchmarks.etl.one_hour``, slice by slice), types each
slice as the ETL types it (``stages.etl.typing.type_jsonl``) and gives every row the
``source_key`` of its raw object, cut as the consumer cuts objects at a steady rate: one object
per (stream, service) and ``--object-seconds`` of event time, under the consumer's keys. Then
each (table, service) partition of the hour, rows in ``stages.etl.tables.in_write_order``, is
written as one Parquet file in memory twice: with pyiceberg's writer settings (the tables'
``WRITE_PROPERTIES``: the layout of backfill's files) and with compaction's
(``stages.etl.tables.parquet_writer_options``). It prints bytes per record per table and per
column (compressed column chunks from the files' footers), files, average file size and the CPU
of writing. No emulator: the Iceberg path of the same files is ``benchmarks.etl`` (d).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.common import machine_info
from benchmarks.etl import HOUR, STREAMS, one_hour
from stages.common.lake import hour_of, object_key, service_partition
from stages.common.runtime import tune_garbage_collector
from stages.etl.committer import combine
from stages.etl.tables import WRITE_PROPERTIES, in_write_order, parquet_writer_options
from stages.etl.typing import KINDS, type_jsonl

RERUN = "python -m benchmarks.etl_layout"
NAMES = {"log": "logs", "metric": "metrics", "apm": "apm"}


def pyiceberg_options() -> dict[str, Any]:
    """What pyiceberg's writer passes to pyarrow for the tables' properties."""
    return {
        "compression": WRITE_PROPERTIES["write.parquet.compression-codec"],
        "compression_level": int(WRITE_PROPERTIES["write.parquet.compression-level"]),
        "dictionary_pagesize_limit": int(WRITE_PROPERTIES["write.parquet.dict-size-bytes"]),
        "data_page_size": 1024 * 1024,
        "write_batch_size": 20_000,
    }


def typed_hour(records: int, object_seconds: float) -> dict[tuple[str, str], pa.Table]:
    """The hour's typed rows per (kind, service), each row with its object's ``source_key``."""
    parts: dict[tuple[str, str], list[pa.Table]] = defaultdict(list)
    for batch in one_hour(records):
        typed = type_jsonl(b"\n".join(orjson.dumps(r) for r in batch), source_key="benchmark")
        assert typed.quarantine.num_rows == 0
        for kind in KINDS:
            rows = typed.tables[kind]
            for service in pc.unique(rows["service"].cast(pa.string())).to_pylist():
                parts[(kind, service)].append(
                    rows.filter(pc.equal(rows["service"].cast(pa.string()), service))
                )
    return {
        (kind, service): with_object_keys(kind, service, combine(chunks), object_seconds)
        for (kind, service), chunks in sorted(parts.items())
    }


def with_object_keys(kind: str, service: str, rows: pa.Table, seconds: float) -> pa.Table:
    micros = pc.cast(rows["timestamp"], pa.int64()).to_numpy()
    window = micros // int(seconds * 1_000_000)
    _, objects = np.unique(window, return_inverse=True)
    counts = np.bincount(objects)
    # Objects in time order, rows of one object consecutive in sequence numbers.
    partition = service_partition(service, hour_of(HOUR))
    keys, sequence = [], 0
    for count in counts:
        first, last = str(sequence), str(sequence + int(count) - 1)
        keys.append(
            object_key(partition, STREAMS[kind], "shardId-000000000000", first, last, "gzip")
        )
        sequence += int(count)
    column = pa.DictionaryArray.from_arrays(
        pa.array(objects.astype(np.int32)), pa.array(keys, pa.string())
    )
    return rows.append_column("source_key", column)


def measure(rows: pa.Table, options: dict[str, Any]) -> tuple[int, dict[str, int], float]:
    sink = pa.BufferOutputStream()
    started = time.process_time()
    pq.write_table(rows, sink, **options)
    cpu = time.process_time() - started
    data = sink.getvalue()
    footer = pq.ParquetFile(pa.BufferReader(data)).metadata
    columns: dict[str, int] = defaultdict(int)
    for group in range(footer.num_row_groups):
        row_group = footer.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            columns[chunk.path_in_schema] += chunk.total_compressed_size
    return len(data), dict(columns), cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=RERUN, description=__doc__)
    parser.add_argument("--records", type=int, default=3_600_000)
    parser.add_argument("--object-seconds", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    args = parser.parse_args(argv)
    if args.quick:
        args.records = 20_000
    if args.records < 1 or args.object_seconds <= 0:
        parser.error("--records and --object-seconds must be positive")
    tune_garbage_collector()
    started = datetime.now()
    partitions = typed_hour(args.records, args.object_seconds)
    print(f"machine: {machine_info()}")
    total = sum(rows.num_rows for rows in partitions.values())
    objects = sum(len(rows["source_key"].chunk(0).dictionary) for rows in partitions.values())
    print(
        f"input: {total:,} records in one hour, {len(partitions)} partitions, {objects:,} raw "
        f"objects of {args.object_seconds:g} s (typed in {datetime.now() - started})"
    )
    layouts = {"pyiceberg": pyiceberg_options, "compaction": None}
    for kind in KINDS:
        ours = [(key, rows) for key, rows in partitions.items() if key[0] == kind]
        records = sum(rows.num_rows for _, rows in ours)
        for layout in layouts:
            size, cpu, columns = 0, 0.0, defaultdict(int)
            for _, rows in ours:
                rows = in_write_order(kind, rows)
                options = (
                    pyiceberg_options()
                    if layout == "pyiceberg"
                    else parquet_writer_options(rows.column_names)
                )
                nbytes, per_column, seconds = measure(rows, options)
                size += nbytes
                cpu += seconds
                for name, value in per_column.items():
                    columns[name] += value
            print(
                f"{NAMES[kind]:<8} {layout:<10} {records:>10,} records "
                f"{size / records:>6.1f} B/record "
                f"{len(ours):>3} files, average {size / len(ours) / 2**20:.2f} MiB, "
                f"write {cpu:.2f} s CPU"
            )
            print(
                "    "
                + ", ".join(
                    f"{name} {value / records:.2f}"
                    for name, value in sorted(columns.items(), key=lambda item: -item[1])
                    if value / records >= 0.01
                )
            )
    print(f"rerun: {RERUN} --records {args.records} --object-seconds {args.object_seconds:g}")


if __name__ == "__main__":
    main()

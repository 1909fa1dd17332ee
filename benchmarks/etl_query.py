"""The query target: a count by service and level over 24 hours of logs at 1,000 records/s.

    .venv/bin/python -m benchmarks.etl_query                       # 24 h at 1,000/s: 86.4M rows
    .venv/bin/python -m benchmarks.etl_query --hours 2 --rate 200  # a small run
    .venv/bin/python -m benchmarks.etl_query --quick               # what tests/benchmarks runs

A private emulator (free port, its own data directory) gets the curated ``telemetry.logs`` table
written directly, in the layout the ETL's compaction leaves: one Parquet file per (service, hour)
partition, rows in compaction's order, one commit per hour. Rows are typed records of Stage 00's
generator: a sample is made and typed once (``stages.etl.typing``), and each partition draws its
rows from that service's sample rows (so the mix of levels, log types, hosts and messages is the
generator's), with a fresh random ``event_id`` and a timestamp spread over the hour for every
row. Services get the share of the total rate they have in the sample. ``--workers`` processes
write the hours' files; this process commits them, an hour at a time.

Then ``python -m stages.query --stats "SELECT service, level, count(*) ..."`` runs ``--repeat``
times as a user runs it: the wall time of the whole command (process start, catalog lookup,
extension loading, query), the query alone, and the S3 requests and bytes it read, from DuckDB's
HTTP log. The counts it prints are checked against the rows written. The result goes to
``benchmarks/results/etl-query-<time>.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from benchmarks.common import machine_info, write_result
from stages.common.config import Settings
from stages.etl.tables import ensure_tables, in_write_order, open_catalog, write_data_file
from stages.etl.typing import ARROW_SCHEMAS, type_jsonl
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import MAX_COUNT, SynthesizeRequest
from tests.support.processes import base_env, start_emulator

QUERY = (
    "SELECT service, level, count(*) AS records FROM telemetry.logs "
    "GROUP BY service, level ORDER BY service, level"
)
TARGET_SECONDS = 5.0
START = datetime(2026, 11, 1, tzinfo=UTC)
EPOCH = date(1970, 1, 1)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where the dashes of a canonical UUID text go.
_UUID_HEX_COLUMNS = [i for i in range(36) if i not in (8, 13, 18, 23)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.etl_query", description=__doc__)
    parser.add_argument("--hours", type=int, default=24, help="hours of logs (default 24)")
    parser.add_argument("--rate", type=int, default=1000, help="log records/s (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="query runs (default 3)")
    parser.add_argument("--sample", type=int, default=20_000, help="generator records sampled")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="writer processes (default: cores)"
    )
    parser.add_argument("--quick", action="store_true", help="2 hours at 50/s, 2 query runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.hours, args.rate, args.repeat, args.sample = 2, 50, 2, 2_000
    for name in ("hours", "rate", "repeat", "sample", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def log_sample(records: int, seed: int) -> pa.Table:
    """``records`` typed log rows of Stage 00's generator (5 % in anomaly windows)."""
    pool = EntityPool()
    lines: list[bytes] = []
    while len(lines) < records:
        request = SynthesizeRequest.model_validate(
            {
                "count": min(MAX_COUNT, records - len(lines)),
                "seed": seed + len(lines),
                "kinds": ["log"],
                "spread_seconds": 3600,
                "anomalous_share": 0.05,
            }
        )
        lines += [orjson.dumps(r) for r in synthesize(request, pool).records]
    return type_jsonl(b"\n".join(lines)).tables["log"]


def uuid_texts(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` random UUID-shaped strings, built as one buffer (no Python object per row)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_HEX_COLUMNS] = digits
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text.tobytes())]
    )


@dataclass
class Plan:
    services: list[str]
    per_hour: dict[str, int]
    rows_by_service: dict[str, np.ndarray]


def plan(sample: pa.Table, rate: int) -> Plan:
    services = pc.cast(sample["service"], pa.string()).to_numpy(zero_copy_only=False)
    counts = Counter(services.tolist())
    names = sorted(counts)
    per_hour_total = rate * 3600
    per_hour = {s: int(per_hour_total * counts[s] / len(services)) for s in names}
    # Rounding leftovers go to the largest service, so an hour holds exactly rate * 3600 rows.
    per_hour[max(names, key=counts.__getitem__)] += per_hour_total - sum(per_hour.values())
    rows = {s: np.flatnonzero(services == s) for s in names}
    return Plan(names, per_hour, rows)


def partition(
    sample: pa.Table, rows: np.ndarray, n: int, hour: datetime, rng: np.random.Generator
) -> pa.Table:
    picked = sample.take(pa.array(rng.choice(rows, size=n)))
    start_us = int(hour.timestamp() * 1_000_000)
    stamps = np.sort(rng.integers(0, 3_600_000_000, size=n)) + start_us
    replaced = {
        "event_id": uuid_texts(rng, n),
        "timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        "dt": pa.array(np.full(n, (hour.date() - EPOCH).days, dtype=np.int32)).view(pa.date32()),
        "hr": pa.array(np.full(n, hour.hour, dtype=np.int32), pa.int32()),
    }
    for name, column in replaced.items():
        picked = picked.set_column(picked.schema.get_field_index(name), name, column)
    # In the order compaction writes a closed hour's rows, so the files are laid out as its are.
    rows = picked.cast(ARROW_SCHEMAS["log"])
    # The raw objects are not made, so no row names one (the query does not read the column).
    rows = rows.append_column("source_key", pa.nulls(n, pa.string()))
    return in_write_order("log", rows)


@dataclass(frozen=True)
class HourFiles:
    hour: int
    files: list[DataFile]
    counts: list[tuple[str, str, int]]


# One per writer process: the sample, the layout and the table, set by ``_start_writer``.
_writer: dict[str, Any] = {}


def _open_table(endpoint: str) -> Table:
    catalog = open_catalog(Settings(aws_endpoint_url=endpoint, aws_default_region="us-east-1"))
    # A busy emulator can stall an upload part for seconds; pyarrow's default gives up after 3.
    catalog.properties["s3.request-timeout"] = "120"
    return ensure_tables(catalog)["log"]


def _start_writer(endpoint: str, sample: pa.Table, layout: Plan, seed: int) -> None:
    _writer.update(table=_open_table(endpoint), sample=sample, layout=layout, seed=seed)


def hour_files(h: int) -> HourFiles:
    """Write hour ``h``'s data files, one per service, without committing them.

    Each service's rows are written on their own as compaction writes a closed hour (one file
    per partition, the tables' Parquet layout), and the hour's generator is seeded by the hour,
    so the data does not depend on which process writes it.
    """
    table: Table = _writer["table"]
    layout: Plan = _writer["layout"]
    rng = np.random.default_rng([_writer["seed"], h])
    hour = START + timedelta(hours=h)
    files: list[DataFile] = []
    counts: list[tuple[str, str, int]] = []
    for service in layout.services:
        if not layout.per_hour[service]:
            continue
        rows = partition(
            _writer["sample"], layout.rows_by_service[service], layout.per_hour[service], hour, rng
        )
        files.append(write_data_file(table, rows, (service, hour.date(), hour.hour)))
        levels = pc.value_counts(pc.cast(rows["level"], pa.string()))
        counts += [(service, v["values"], v["counts"]) for v in levels.to_pylist()]
    return HourFiles(h, files, counts)


def write_logs(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Write ``args.hours`` hours of logs: ``args.workers`` processes write the data files of
    one hour each, and this process commits each hour's files, in hour order, as one append."""
    began = time.perf_counter()
    sample = log_sample(args.sample, args.seed)
    layout = plan(sample, args.rate)
    endpoint = settings.aws_endpoint_url
    assert endpoint is not None
    table = _open_table(endpoint)
    written: Counter[tuple[str, str]] = Counter()
    # Spawned, not forked: this process already runs pyarrow's and pyiceberg's threads.
    with ProcessPoolExecutor(
        args.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_writer,
        initargs=(endpoint, sample, layout, args.seed),
    ) as pool:
        for done, hour in enumerate(pool.map(hour_files, range(args.hours)), start=1):
            with table.transaction() as tx, tx.update_snapshot().fast_append() as append:
                for data_file in hour.files:
                    append.append_data_file(data_file)
            for service, level, n in hour.counts:
                written[(service, level)] += n
            rows = done * args.rate * 3600
            print(
                f"  hour {done}/{args.hours}: {rows:,} rows, {time.perf_counter() - began:.0f} s",
                flush=True,
            )
    summary = table.refresh().current_snapshot().summary  # type: ignore[union-attr]
    props = summary.additional_properties if summary else {}
    return {
        "rows": int(props.get("total-records", 0)),
        "data_files": int(props.get("total-data-files", 0)),
        "table_bytes": int(props.get("total-files-size", 0)),
        "services": len(layout.services),
        "workers": args.workers,
        "write_seconds": round(time.perf_counter() - began, 1),
        "written": written,
    }


def _stat(stderr: str, prefix: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith(prefix))


def run_query(endpoint: str, home: Path) -> dict[str, Any]:
    env = base_env(endpoint, HOME=str(home))
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "stages.query", "--stats", "--format", "json", QUERY],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"the query command failed ({done.returncode}):\n{done.stderr}")
    timing = _stat(done.stderr, "query:")  # "query: 1.234 s, total: 2.345 s"
    s3 = _stat(done.stderr, "S3:")  # "S3: N requests (G GET, H HEAD), B bytes read"
    files = _stat(done.stderr, "data files:")
    return {
        "wall_seconds": round(wall, 3),
        "query_seconds": float(timing.split()[1]),
        "requests": int(s3.split()[1]),
        "bytes_read": int(s3.split(", ")[-1].split()[0]),
        "data_files_read": int(files.split()[2]),
        "counts": {(r["service"], r["level"]): r["records"] for r in orjson.loads(done.stdout)},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"etl query benchmark: {args.hours} h of logs at {args.rate:,}/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="etl-query-bench-") as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        (root / "home").mkdir()
        emulator, endpoint = start_emulator(root / "logs", DATA_DIR=str(root / "data"))
        try:
            settings = Settings(aws_endpoint_url=endpoint, aws_default_region="us-east-1")
            lake = write_logs(settings, args)
            written = lake.pop("written")
            print(
                f"written: {lake['rows']:,} rows in {lake['data_files']} files, "
                f"{lake['table_bytes'] / 1e6:,.1f} MB, in {lake['write_seconds']} s",
                flush=True,
            )
            runs = []
            for i in range(args.repeat):
                run = run_query(endpoint, root / "home")
                correct = run.pop("counts") == dict(written)
                run["correct"] = correct
                runs.append(run)
                print(
                    f"query {i + 1}: {run['wall_seconds']:.2f} s end to end "
                    f"({run['query_seconds']:.2f} s query), {run['requests']} S3 requests, "
                    f"{run['bytes_read']:,} bytes read from {run['data_files_read']} files, "
                    f"counts {'match' if correct else 'DIFFER'}",
                    flush=True,
                )
        finally:
            emulator.stop()
    walls = [r["wall_seconds"] for r in runs]
    result = {
        "benchmark": "etl_query",
        "query": QUERY,
        "hours": args.hours,
        "rate": args.rate,
        "machine": machine_info(),
        "lake": lake,
        "runs": runs,
        "median_wall_seconds": statistics.median(walls),
        "target_seconds": TARGET_SECONDS,
        "met": all(r["correct"] for r in runs) and statistics.median(walls) <= TARGET_SECONDS,
    }
    path = write_result("etl-query", result)
    print(
        f"median {result['median_wall_seconds']:.2f} s end to end "
        f"(target {TARGET_SECONDS:.0f} s): {'met' if result['met'] else 'NOT met'}; {path}"
    )
    return 0 if all(r["correct"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

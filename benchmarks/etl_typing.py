"""What typing the raw zone costs, and what the typed records weigh in Parquet.

    .venv/bin/python -m benchmarks.etl_typing [--records 100000] [--repeat 3]
        [--object-records 1000]

Makes records with Stage 00's generator in-process (the mix the mock services emit: logs,
metrics and APM spans with their attributes and labels), joins them as the consumer's JSONL
objects hold them, and reports:

- typing throughput in records/s per core: CPU time of ``stages.etl.typing.type_jsonl`` over the
  whole sample as one body of mixed kinds (best of ``--repeat``), which is wall time on one core,
  with the garbage collector tuned as every pipeline process tunes it (``stages.common.runtime``),
  next to the CPU time of only parsing the lines into Python objects with orjson (for
  comparison: the typing's fast path decodes them with msgspec into typed structs instead);
- the same records typed as a fold types them: one call per raw partition (kind and service),
  the partition's objects of ``--object-records`` records joined into one body;
- bytes per record for each kind: raw JSONL, gzip (the raw zone's option) and Parquet zstd-3 as
  the Iceberg tables write it, in one file per (service, dt, hr) partition like a run of the ETL.
"""

from __future__ import annotations

import argparse
import gzip
import io
import time
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.common import machine_info
from stages.common.runtime import tune_garbage_collector
from stages.etl.typing import KINDS, type_jsonl
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import MAX_COUNT, SynthesizeRequest


def sample(records: int) -> list[dict[str, Any]]:
    pool = EntityPool()
    out: list[dict[str, Any]] = []
    seed = 0
    while len(out) < records:
        count = min(MAX_COUNT, records - len(out))
        # Ten minutes per request and 5 % anomalous, like a live run with scenarios.
        request = SynthesizeRequest.model_validate(
            {"count": count, "seed": seed, "spread_seconds": 600, "anomalous_share": 0.05}
        )
        out += synthesize(request, pool).records
        seed += 1
    return out


def parquet_bytes(table: pa.Table) -> int:
    """Bytes of ``table`` in Parquet zstd-3, one file per (service, dt, hr)."""
    total = 0
    keys = pa.table(
        {
            "service": pc.cast(table["service"], pa.string()),
            "dt": table["dt"],
            "hr": table["hr"],
        }
    )
    groups = keys.group_by(["service", "dt", "hr"]).aggregate([])
    for service, dt, hr in zip(
        *(groups[c].to_pylist() for c in ("service", "dt", "hr")), strict=True
    ):
        mask = pc.and_(
            pc.and_(pc.equal(keys["service"], service), pc.equal(keys["dt"], pa.scalar(dt))),
            pc.equal(keys["hr"], hr),
        )
        buffer = io.BytesIO()
        pq.write_table(table.filter(mask), buffer, compression="zstd", compression_level=3)
        total += buffer.tell()
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.etl_typing", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--object-records", type=int, default=1000)
    args = parser.parse_args(argv)

    records = sample(args.records)
    # The collector settings every long-running process of the pipeline starts with.
    tune_garbage_collector()
    lines = {kind: [orjson.dumps(r) for r in records if r["kind"] == kind] for kind in KINDS}
    body = b"\n".join(orjson.dumps(r) for r in records) + b"\n"

    # As the fold types them: per raw partition (kind, service), its objects' bodies joined.
    # First: what the mixed body leaves on the heap (its tables, kept for the sizes below) made
    # every later typing call slower by ~1.5 us per record, whichever the code.
    partitions: dict[tuple[str, str], list[bytes]] = {}
    for r in records:
        partitions.setdefault((r["kind"], r["service"]), []).append(orjson.dumps(r))
    bodies = []
    for partition_lines in partitions.values():
        size = args.object_records
        objects = [partition_lines[i : i + size] for i in range(0, len(partition_lines), size)]
        bodies.append(b"".join(b"\n".join(o) + b"\n" for o in objects))
    by_partition = float("inf")
    for _ in range(args.repeat):
        started = time.process_time()
        typed_rows = sum(type_jsonl(body).typed for body in bodies)
        by_partition = min(by_partition, time.process_time() - started)
    assert typed_rows == len(records)

    best = float("inf")
    for _ in range(args.repeat):
        started = time.process_time()
        typed = type_jsonl(body)
        best = min(best, time.process_time() - started)
    assert typed.quarantine.num_rows == 0 and typed.typed == len(records)

    # For comparison on this machine at this moment: only parsing the lines, no columns.
    parse_only = float("inf")
    for _ in range(args.repeat):
        started = time.process_time()
        for line in body.split(b"\n")[:-1]:
            orjson.loads(line)
        parse_only = min(parse_only, time.process_time() - started)

    print(f"machine: {machine_info()}")
    print(
        f"typing: {len(records):,} records ({len(body) / 2**20:.1f} MiB JSONL) in {best:.3f} s "
        f"CPU = {len(records) / best:,.0f} records/s per core"
    )
    print(
        f"typing by raw partition ({len(bodies)} calls, objects of {args.object_records:,} "
        f"records): {by_partition:.3f} s CPU = {len(records) / by_partition:,.0f} records/s "
        f"per core ({by_partition / len(records) * 1e6:.2f} us per record)"
    )
    print(
        f"orjson.loads alone: {parse_only:.3f} s CPU = {len(records) / parse_only:,.0f} records/s "
        f"per core ({parse_only / best:.0%} of typing)"
    )
    print(
        f"{'kind':<7} {'records':>8} {'raw B/rec':>10} {'gzip B/rec':>11} "
        f"{'parquet zstd B/rec':>19}"
    )
    for kind in KINDS:
        raw = b"\n".join(lines[kind]) + b"\n"
        n = len(lines[kind])
        print(
            f"{kind:<7} {n:>8,} {len(raw) / n:>10.1f} {len(gzip.compress(raw, 6)) / n:>11.1f} "
            f"{parquet_bytes(typed.tables[kind]) / n:>19.1f}"
        )


if __name__ == "__main__":
    main()

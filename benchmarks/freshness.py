"""Freshness of the curated lake in live mode: how long after it was generated a record is
queryable in its Iceberg table.

    .venv/bin/python -m benchmarks.freshness --rate 1000 --duration 120
    .venv/bin/python -m benchmarks.freshness --rate 10000 --duration 120
    .venv/bin/python -m benchmarks.freshness --rate 1000,10000      # one fresh fleet per rate
    .venv/bin/python -m benchmarks.freshness --quick                # 200 records/s for 15 s
    .venv/bin/python -m benchmarks.freshness --env ETL_INTERVAL_SECONDS=5   # a setting to try

For each rate it starts a private fleet on free ports: the embedded emulator, the Kinesis
consumer and the ETL service (``python -m stages.etl``), each with its default settings (plus
``--env``). Records are put on the three Kinesis streams with the producer the Ingestion
Interface uses (``stages.ingestion.producer.KinesisProducer``: KPL aggregation, partition key =
service, routed by kind), in process: the live path from Kinesis on is the product's own, without
the CPU the six Stage 00 services would take from the two cores. The records are Stage 00
generator records (logs, metrics, APM spans of every service) whose ``event_id`` carries a
sequence number and whose ``timestamp`` is the wall-clock time when the benchmark made them
(their generation time), sent in ticks of 10 ms at the requested rate.

A record is visible when a snapshot of its table that holds it is committed: a poller loads the
three tables every ``--poll`` seconds and, for every new append snapshot, reads the
``event_id``, ``timestamp`` and ``source_key`` columns of the data files that snapshot added.
Latency = the snapshot's commit time (``timestamp-ms``) - the record's ``timestamp``. Every sent
record must become visible once: the missing and the duplicated are counted. The latency is also
split at the raw zone: the raw object's ``LastModified`` (second resolution in the emulator) -
``timestamp`` (consumer), and commit - ``LastModified`` (ETL). The CPU of the emulator, the
consumer and the ETL is sampled over the sending window.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation

from benchmarks.common import machine_info, write_result
from stages.common import aws, lake, resources
from stages.common.config import Settings
from stages.etl.tables import TABLE_NAMES, open_catalog
from stages.ingestion.producer import KinesisProducer
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import SynthesizeRequest
from tests.support.lake import ConsumerProcess
from tests.support.processes import (
    ROOT,
    Process,
    base_env,
    free_port,
    start_emulator,
    start_service,
)

TARGET_P50_S = 30.0
TARGET_P99_S = 60.0
TICK_SECONDS = 0.01
TEMPLATES = 3000
COLUMNS = ("event_id", "timestamp", "source_key")


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"--env takes NAME=VALUE, not {pair!r}")
        out[name] = value
    return out


def templates(count: int = TEMPLATES) -> list[dict[str, Any]]:
    """Stage 00 generator records of every kind and service (the stream's mix)."""
    body = {"count": count, "seed": 14, "spread_seconds": 60, "timestamp": "2026-12-01T00:00:00Z"}
    return synthesize(SynthesizeRequest.model_validate(body), EntityPool()).records


# (kind, service, JSON up to the event id, between the event id and the timestamp, after it)
EncodedTemplate = tuple[str, str, bytes, bytes, bytes]
_EVENT_ID_MARK = "\x00event-id\x00"
_TIMESTAMP_MARK = "\x00timestamp\x00"


def encode_template(record: dict[str, Any]) -> EncodedTemplate:
    """A template as the JSON the producer would make of it, cut around its ``event_id`` and
    ``timestamp``: a record is then three joins instead of a dict copy and an encoding, CPU
    that the benchmark's own process would otherwise take from the fleet it measures. The
    producer gets ``(service, bytes)`` pairs, exactly the bytes it made of the dict."""
    marked = {**record, "event_id": _EVENT_ID_MARK, "timestamp": _TIMESTAMP_MARK}
    text = orjson.dumps(marked)
    event_mark = orjson.dumps(_EVENT_ID_MARK)[1:-1]
    time_mark = orjson.dumps(_TIMESTAMP_MARK)[1:-1]
    head, rest = text.split(event_mark)
    if list(marked).index("event_id") > list(marked).index("timestamp"):
        raise ValueError("templates put event_id before timestamp")
    middle, tail = rest.split(time_mark)
    return record["kind"], record["service"], head, middle, tail


# --- the fleet ------------------------------------------------------------------------------


@dataclass
class Fleet:
    emulator: Process
    endpoint: str
    consumer: ConsumerProcess
    etl: Process
    etl_url: str
    settings: Settings

    @classmethod
    def start(cls, log_dir: Path, env: dict[str, str]) -> Fleet:
        emulator, endpoint = start_emulator(log_dir)
        consumer = etl = None
        try:
            consumer = ConsumerProcess(endpoint, log_dir, name="fresh-consumer", **env)
            consumer.wait_healthy(60)
            port = free_port()
            etl_env = base_env(endpoint, ETL_PORT=str(port), ETL_WORKER_ID="fresh-etl", **env)
            etl, url = start_service("etl", etl_env, log_dir, port, name=f"fresh-etl-{port}")
        except BaseException:
            for proc in (consumer, emulator):
                if proc is not None:
                    proc.stop()
            raise
        return cls(emulator, endpoint, consumer, etl, url, Settings(aws_endpoint_url=endpoint))

    def pids(self) -> dict[str, int]:
        return {"emulator": self.emulator.pid, "consumer": self.consumer.pid, "etl": self.etl.pid}

    def stop(self) -> None:
        for proc in (self.etl, self.consumer, self.emulator):
            proc.stop()


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[name] = times.user + times.system
    return out


# --- what became visible, and when ------------------------------------------------------------


@dataclass
class Visibility:
    """First commit time of every sent record, read from the tables' snapshots."""

    total: int
    run: str
    commit_ms: np.ndarray = field(init=False)
    event_ms: np.ndarray = field(init=False)
    source: np.ndarray = field(init=False)
    sources: list[str] = field(default_factory=list)
    source_index: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    foreign_rows: int = 0
    snapshots: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        self.commit_ms = np.zeros(self.total, np.int64)
        self.event_ms = np.zeros(self.total, np.int64)
        self.source = np.full(self.total, -1, np.int64)

    @property
    def visible(self) -> int:
        return int(np.count_nonzero(self.commit_ms))

    def add(self, rows: pa.Table, commit_ms: int) -> None:
        ids = rows.column("event_id").combine_chunks()
        if pa.types.is_dictionary(ids.type):
            ids = ids.dictionary_decode()
        prefix = f"{self.run}-"
        ours = pc.starts_with(ids, prefix)
        self.foreign_rows += len(ids) - pc.sum(ours).as_py() if len(ids) else 0
        rows = rows.filter(ours)
        if rows.num_rows == 0:
            return
        ids = pc.utf8_slice_codeunits(rows.column("event_id").cast(pa.string()), len(prefix))
        index = ids.cast(pa.int64()).to_numpy()
        event = rows.column("timestamp").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        sources = rows.column("source_key").cast(pa.string()).to_pylist()
        source_ids = np.array([self._source(s) for s in sources], np.int64)
        seen = self.commit_ms[index] != 0
        self.duplicates += int(np.count_nonzero(seen))
        fresh = index[~seen]
        self.commit_ms[fresh] = commit_ms
        self.event_ms[fresh] = event.to_numpy()[~seen]
        self.source[fresh] = source_ids[~seen]

    def _source(self, key: str) -> int:
        if key not in self.source_index:
            self.source_index[key] = len(self.sources)
            self.sources.append(key)
        return self.source_index[key]


class Poller:
    """Loads the three data tables every ``every`` seconds and reads what each new append
    snapshot added."""

    def __init__(self, settings: Settings, visibility: Visibility, every: float) -> None:
        self.catalog = open_catalog(settings, name="freshness")
        self.visibility = visibility
        self.every = every
        self.done: set[int] = set()
        self.other_operations: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freshness-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.poll()
            except Exception as exc:  # shown in the report; the next poll tries again
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(max(0.0, self.every - (time.monotonic() - began)))

    def poll(self) -> None:
        for kind, name in TABLE_NAMES.items():
            if kind not in ("log", "metric", "apm"):
                continue
            try:
                table = self.catalog.load_table(f"telemetry.{name}")
            except NoSuchTableError:
                continue
            for snapshot in sorted(table.snapshots(), key=lambda s: s.timestamp_ms):
                if snapshot.snapshot_id in self.done:
                    continue
                self.read_snapshot(table, name, snapshot)
                self.done.add(snapshot.snapshot_id)

    def read_snapshot(self, table: Table, name: str, snapshot: Any) -> None:
        operation = snapshot.summary.operation if snapshot.summary else None
        if operation != Operation.APPEND:
            # Compaction and backfill rewrite rows that an append made visible first.
            self.other_operations[f"{name}:{operation}"] += 1
            return
        self.visibility.snapshots[name].append(snapshot.timestamp_ms)
        for manifest in snapshot.manifests(table.io):
            if manifest.added_snapshot_id != snapshot.snapshot_id:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                if entry.status != ManifestEntryStatus.ADDED:
                    continue
                if entry.snapshot_id != snapshot.snapshot_id:
                    continue
                with table.io.new_input(entry.data_file.file_path).open() as stream:
                    rows = pq.read_table(stream, columns=list(COLUMNS))
                self.visibility.add(rows, snapshot.timestamp_ms)


# --- one rate -------------------------------------------------------------------------------


def send(
    rate: int,
    seconds: float,
    run: str,
    pool: list[EncodedTemplate],
    producers: dict[str, KinesisProducer],
    acked: list[tuple[float, int]],
) -> tuple[int, int, float]:
    """Records at ``rate`` for ``seconds``; returns (sent, failed puts, achieved rate).
    ``acked`` receives (seconds from generation to Kinesis's acknowledgement, records) for
    every put batch."""
    total = int(rate * seconds)
    per_tick = max(1, round(rate * TICK_SECONDS))
    tick_seconds = per_tick / rate
    batches = []
    sent = 0
    started = time.monotonic()
    while sent < total:
        delay = started + (sent / per_tick) * tick_seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        stamp_bytes = stamp.encode()
        by_kind: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        for i in range(sent, min(total, sent + per_tick)):
            kind, service, head, middle, tail = pool[i % len(pool)]
            event_id = f"{run}-{i:010d}".encode()
            by_kind[kind].append((service, head + event_id + middle + stamp_bytes + tail))
        made = now.timestamp()
        for kind, records in by_kind.items():
            batch = producers[kind].submit_many(records, timeout=60)
            batch.add_done_callback(
                lambda done, made=made: acked.append((time.time() - made, len(done)))
            )
            batches.append(batch)
            sent += len(records)
    achieved = sent / (time.monotonic() - started)
    failed = 0
    for batch in batches:
        try:
            batch.result(120)
        except Exception as exc:  # counted as failed; those records cannot be visible
            failed += len(getattr(exc, "failed", ())) or len(batch)
    return sent, failed, achieved


def raw_modified_ms(settings: Settings) -> dict[str, int]:
    s3 = aws.client("s3", settings)
    out = {}
    for spec in resources.streams(settings):
        for entry in lake.list_objects(s3, spec.bucket, "service="):
            out[entry["Key"]] = int(entry["LastModified"].timestamp() * 1000)
    return out


def stats(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    q = np.percentile(values, [50, 90, 99], method="inverted_cdf")
    return {
        "p50_s": round(float(q[0]), 2),
        "p90_s": round(float(q[1]), 2),
        "p99_s": round(float(q[2]), 2),
        "max_s": round(float(values.max()), 2),
    }


def mean_gap_s(times_ms: list[int]) -> float | None:
    times = sorted(times_ms)
    if len(times) < 2:
        return None
    return round((times[-1] - times[0]) / 1000 / (len(times) - 1), 2)


def run_rate(
    rate: int, seconds: float, drain: float, poll: float, env: dict[str, str], log_dir: Path
) -> dict[str, Any]:
    pool = [encode_template(record) for record in templates()]
    run = uuid.uuid4().hex[:8]
    total = int(rate * seconds)
    fleet = Fleet.start(log_dir, env)
    try:
        catalog = open_catalog(fleet.settings, name="freshness-wait")
        deadline = time.monotonic() + 120
        while True:  # the ETL creates its tables on its first fold
            try:
                for name in ("logs", "metrics", "apm"):
                    catalog.load_table(f"telemetry.{name}")
                break
            except NoSuchTableError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the ETL did not create its tables in 120 s") from None
                time.sleep(0.5)
        visibility = Visibility(total, run)
        poller = Poller(fleet.settings, visibility, poll)
        poller.start()
        producers = {
            kind: KinesisProducer(resources.stream_for_kind(fleet.settings, kind).name,
                                  fleet.settings)
            for kind in ("log", "metric", "apm")
        }  # fmt: skip
        pids = {**fleet.pids(), "benchmark (producer, poller)": os.getpid()}
        print(f"  pids: {pids}", flush=True)
        cpu_before = cpu_seconds(pids)
        load_before = os.getloadavg()
        began = time.monotonic()
        acked: list[tuple[float, int]] = []
        sent, failed, achieved = send(rate, seconds, run, pool, producers, acked)
        send_wall = time.monotonic() - began
        cpu_sent = cpu_seconds(pids)
        for producer in producers.values():
            producer.close(60)
        drain_began = time.monotonic()
        while visibility.visible < sent - failed and time.monotonic() - drain_began < drain:
            if not fleet.etl.alive() or not fleet.consumer.alive():
                break
            time.sleep(0.5)
        drained = time.monotonic() - drain_began
        poller.stop()
        poller.poll()  # one last look after the last wait
        cpu_after = cpu_seconds(pids)
        load_after = os.getloadavg()
        modified = raw_modified_ms(fleet.settings)
        alive = {"etl": fleet.etl.alive(), "consumer": fleet.consumer.alive()}
    finally:
        fleet.stop()

    seen = visibility.commit_ms != 0
    latency = (visibility.commit_ms[seen] - visibility.event_ms[seen]) / 1000
    source = visibility.source[seen]
    raw_at = np.array(
        [modified.get(visibility.sources[s], 0) if s >= 0 else 0 for s in source], np.int64
    )
    known = raw_at != 0
    to_raw = (raw_at[known] - visibility.event_ms[seen][known]) / 1000
    to_table = (visibility.commit_ms[seen][known] - raw_at[known]) / 1000
    on_kinesis = np.repeat(
        np.array([a for a, _ in acked], np.float64), np.array([n for _, n in acked], np.int64)
    )
    cpu_send = {k: cpu_sent[k] - cpu_before[k] for k in cpu_sent if k in cpu_before}
    cpu_all = {k: cpu_after[k] - cpu_before[k] for k in cpu_after if k in cpu_before}
    summary = stats(latency)
    rows_per_snapshot = {name: len(times) for name, times in visibility.snapshots.items()}
    return {
        "rate": rate,
        "duration_s": seconds,
        "achieved_rate": round(achieved),
        "sent": sent,
        "failed_puts": failed,
        "visible": visibility.visible,
        "missing": sent - visibility.visible,
        "duplicated": visibility.duplicates,
        "latency": summary,
        "to_kinesis_ack": stats(on_kinesis),
        "to_raw_zone": stats(to_raw),
        "raw_zone_to_table": stats(to_table),
        "append_snapshots": rows_per_snapshot,
        "mean_seconds_between_appends": {
            name: mean_gap_s(times) for name, times in visibility.snapshots.items()
        },
        "other_snapshots": dict(poller.other_operations),
        "raw_objects": len(visibility.sources),
        "drain_s": round(drained, 1),
        "processes_alive_at_end": alive,
        "cpu_percent_while_sending": {
            k: round(100 * v / max(1e-6, send_wall), 1) for k, v in cpu_send.items()
        },
        "cpu_ms_per_1000_records": {
            k: round(1e6 * v / max(1, sent), 1) for k, v in cpu_all.items()
        },
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "poll_s": poll,
        "poll_errors": poller.errors[:5],
        "pass": bool(
            summary is not None
            and summary["p50_s"] <= TARGET_P50_S
            and summary["p99_s"] <= TARGET_P99_S
            and sent - visibility.visible == 0
            and visibility.duplicates == 0
        ),
    }


def rerun_command(args: argparse.Namespace) -> str:
    parts = ["python -m benchmarks.freshness"]
    if args.quick:
        parts.append("--quick")
    else:
        parts += ["--rate", ",".join(map(str, args.rates)), "--duration", f"{args.duration:g}"]
    parts += [f"--env {k}={v}" for k, v in sorted(args.env.items())]
    return " ".join(parts)


def print_report(results: list[dict[str, Any]], path: Path, rerun: str) -> None:
    print()
    print(
        f"{'rate/s':>7} {'sent':>9} {'visible':>9} {'missing':>7} {'dup':>4} "
        f"{'p50 s':>7} {'p90 s':>7} {'p99 s':>7} {'max s':>7}  verdict"
    )
    for r in results:
        lat = r["latency"] or {"p50_s": "-", "p90_s": "-", "p99_s": "-", "max_s": "-"}
        verdict = "pass" if r["pass"] else "MISS"
        print(
            f"{r['rate']:>7} {r['sent']:>9} {r['visible']:>9} {r['missing']:>7} "
            f"{r['duplicated']:>4} {lat['p50_s']:>7} {lat['p90_s']:>7} {lat['p99_s']:>7} "
            f"{lat['max_s']:>7}  {verdict}"
        )
    print(f"targets: p50 <= {TARGET_P50_S:g} s, p99 <= {TARGET_P99_S:g} s, nothing missing")
    for r in results:
        print(f"\nat {r['rate']:,} records/s (achieved {r['achieved_rate']:,}/s):")
        print(f"  generation -> acknowledged by Kinesis (producer): {r['to_kinesis_ack']}")
        print(f"  generation -> raw zone (producer + consumer): {r['to_raw_zone']}")
        print(f"  raw zone -> committed (ETL):       {r['raw_zone_to_table']}")
        print(f"  append snapshots: {r['append_snapshots']}, "
              f"mean seconds between appends: {r['mean_seconds_between_appends']}")  # fmt: skip
        print(f"  CPU while sending, % of one core: {r['cpu_percent_while_sending']}")
        print(f"  CPU ms per 1,000 records (sending + drain): {r['cpu_ms_per_1000_records']}")
        print(f"  raw objects: {r['raw_objects']}, drain: {r['drain_s']} s, "
              f"load average before/after: {r['load_average_before_after']}")  # fmt: skip
        if r["poll_errors"]:
            print(f"  poll errors: {r['poll_errors']}")
    print(f"\nJSON: {path.relative_to(ROOT)}")
    print(f"rerun: .venv/bin/{rerun}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.freshness",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", default="1000", help="records/s, comma-separated for several")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of sending")
    parser.add_argument("--drain", type=float, default=180.0,
                        help="seconds to wait after sending for the last records")  # fmt: skip
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between table polls")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the consumer and the ETL (repeatable)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="200 records/s for 15 s")
    args = parser.parse_args(argv)
    try:
        args.rates = [int(r) for r in args.rate.split(",") if r.strip()]
        args.env = parse_env(args.env)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    if not args.rates or min(args.rates) <= 0 or args.duration <= 0:
        parser.error("rates and --duration must be positive")
    if args.quick:
        args.rates, args.duration = [200], 15.0
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger("pyiceberg.io").setLevel(logging.WARNING)
    log_dir = ROOT / "benchmarks" / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for rate in args.rates:
        print(f"{rate:,} records/s for {args.duration:g} s ...", flush=True)
        results.append(run_rate(rate, args.duration, args.drain, args.poll, args.env, log_dir))
    rerun = rerun_command(args)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "path": "KinesisProducer (in process) -> Kinesis (emulator) -> consumer -> raw zone -> "
        "ETL -> Iceberg tables",
        "env": args.env,
        "targets": {"p50_s": TARGET_P50_S, "p99_s": TARGET_P99_S},
        "rates": results,
        "rerun": rerun,
    }
    path = write_result("freshness", result)
    print_report(results, path, rerun)
    sys.exit(0 if all(r["pass"] for r in results) else 1)


if __name__ == "__main__":
    main()

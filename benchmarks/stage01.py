"""Stage 01 benchmark: producer -> Kinesis (embedded emulator) -> consumer -> S3.

    .venv/bin/python -m benchmarks.stage01            # full run (about 2 minutes)
    .venv/bin/python -m benchmarks.stage01 --quick    # smaller volumes, for a smoke check

Each phase starts a fresh emulator and consumer subprocess with default settings (unless the
phase says otherwise), so phases do not disturb each other. Prints a table and writes JSON to
benchmarks/results/.

- throughput: N records of ~300 bytes put as fast as the producer goes; the figure is N divided
  by the time from the first put until the consumer has written the last one to S3. Afterwards
  the bucket is read back and every event_id must be there exactly once.
- latency: 1,000 records/s for a while; a poller lists the bucket every 50 ms and reads each new
  object; latency = first time the record was seen in S3 - time it was handed to the producer.
- memory: the consumer's peak RSS (sampled every 50 ms) during the throughput phase.
- storage: stored bytes per record, plain and gzip (COMPRESSION=gzip).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil

from stages.common import aws
from stages.common.config import Settings
from stages.common.lake import is_hidden, list_objects, read_lines
from stages.ingestion.producer import KinesisProducer
from tests.support.lake import ConsumerProcess
from tests.support.processes import ROOT, Process, start_emulator

STREAM = "stage01-logs-stream"
BUCKET = "md-raw-logs"
SERVICES = ("api-gateway", "payment-service", "auth-service", "account-service", "fraud-detection")
LEVELS = ("INFO", "INFO", "INFO", "WARN", "ERROR")


def make_record(i: int, now: datetime) -> dict[str, Any]:
    """A canonical log record of about 300 bytes as JSON."""
    service = SERVICES[i % len(SERVICES)]
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "kind": "log",
        "service": service,
        "host": f"{service}-{i % 3}",
        "level": LEVELS[i % len(LEVELS)],
        "message": f"req {i} ok",
        "log_type": "api_gateway_log",
        "category": "application",
        "is_anomaly": False,
        "attributes": {"http.status_code": 200, "duration_ms": i % 500},
    }


@dataclass
class Stack:
    emulator: Process
    endpoint: str
    consumer: ConsumerProcess
    settings: Settings
    peak_rss: int = 0
    _sampling: bool = True
    _sampler: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def start(cls, log_dir: Path, **consumer_env: str) -> Stack:
        emulator, endpoint = start_emulator(log_dir)
        consumer = ConsumerProcess(endpoint, log_dir, **consumer_env)
        consumer.wait_healthy()
        stack = cls(emulator, endpoint, consumer, Settings(aws_endpoint_url=endpoint))
        stack._sampler = threading.Thread(target=stack._sample_rss, daemon=True)
        stack._sampler.start()
        return stack

    def _sample_rss(self) -> None:
        proc = psutil.Process(self.consumer.pid)
        while self._sampling:
            try:
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def records_out(self) -> float:
        return self.consumer.metric("consumer_records_out_total", stream=STREAM)

    def stop(self) -> None:
        self._sampling = False
        self.consumer.stop()
        self.emulator.stop()


def read_lake(s3: Any) -> tuple[list[dict[str, Any]], int]:
    records: list[dict[str, Any]] = []
    stored = 0
    for obj in list_objects(s3, BUCKET):
        if is_hidden(obj["Key"]):
            continue
        body = read_lines(s3, BUCKET, obj["Key"]).require_complete()
        stored += body.stored_bytes
        records.extend(orjson.loads(line) for line in body.lines)
    return records, stored


def check_exactly_once(records: list[dict[str, Any]], sent: list[dict[str, Any]]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for record in records:
        seen[record["event_id"]] = seen.get(record["event_id"], 0) + 1
    sent_ids = {r["event_id"] for r in sent}
    return {
        "sent": len(sent_ids),
        "in_s3": len(records),
        "missing": len(sent_ids - set(seen)),
        "duplicated": sum(1 for n in seen.values() if n > 1),
    }


def wait_until_written(stack: Stack, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.records_out() >= expected:
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"consumer wrote {stack.records_out():.0f} of {expected} records")


def phase_throughput(log_dir: Path, total: int, compression: str = "none") -> dict[str, Any]:
    stack = Stack.start(log_dir, COMPRESSION=compression)
    try:
        now = datetime.now(UTC)
        sent = [make_record(i, now) for i in range(total)]
        mean_size = statistics.fmean(len(orjson.dumps(r)) for r in sent[:1000])
        producer = KinesisProducer(STREAM, stack.settings)
        started = time.monotonic()
        batches = [producer.submit_many(sent[i : i + 5000]) for i in range(0, total, 5000)]
        for batch in batches:
            batch.result(300)
        produced = time.monotonic()
        finished = wait_until_written(stack, total, timeout=600)
        producer.close(30)
        records, stored = read_lake(aws.client("s3", stack.settings))
        check = check_exactly_once(records, sent)
        return {
            "records": total,
            "mean_record_bytes": round(mean_size, 1),
            "producer_records_per_s": round(total / (produced - started)),
            "end_to_end_records_per_s": round(total / (finished - started)),
            "seconds": round(finished - started, 2),
            "consumer_peak_rss_mb": round(stack.peak_rss / 2**20, 1),
            "stored_bytes_per_record": round(stored / max(1, len(records)), 1),
            "exactly_once": check,
        }
    finally:
        stack.stop()


def phase_latency(log_dir: Path, rate: int, seconds: float) -> dict[str, Any]:
    stack = Stack.start(log_dir)
    s3 = aws.client("s3", stack.settings)
    put_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    known_keys: set[str] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            tick = time.monotonic()
            for obj in list_objects(s3, BUCKET):
                if obj["Key"] in known_keys:
                    continue
                known_keys.add(obj["Key"])
                for line in read_lines(s3, BUCKET, obj["Key"]).require_complete().lines:
                    seen_at.setdefault(orjson.loads(line)["event_id"], tick)
            stop.wait(max(0.0, 0.05 - (time.monotonic() - tick)))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    producer = KinesisProducer(STREAM, stack.settings)
    try:
        total = int(rate * seconds)
        tick_every = 0.01  # send rate/100 records every 10 ms
        per_tick = max(1, rate // 100)
        started = time.monotonic()
        sent = 0
        while sent < total:
            target = started + (sent / per_tick) * tick_every
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = datetime.now(UTC)
            chunk = [make_record(sent + i, now) for i in range(per_tick)]
            moment = time.monotonic()
            for record in chunk:
                put_at[record["event_id"]] = moment
            producer.submit_many(chunk)
            sent += per_tick
        achieved = sent / (time.monotonic() - started)
        deadline = time.monotonic() + 30
        while len(seen_at) < len(put_at) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        poller.join(10)
        producer.close(30)
        stack.stop()
    latencies = sorted(seen_at[k] - put_at[k] for k in put_at if k in seen_at)
    if not latencies:
        raise RuntimeError("no record became visible in S3")

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 3)

    return {
        "requested_records_per_s": rate,
        "achieved_records_per_s": round(achieved),
        "records": len(put_at),
        "visible": len(latencies),
        "p50_s": pct(50),
        "p95_s": pct(95),
        "p99_s": pct(99),
        "max_s": round(latencies[-1], 3),
        "poll_resolution_s": 0.05,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stage01", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller volumes, for a smoke check")
    parser.add_argument("--records", type=int, help="records in the throughput phase")
    args = parser.parse_args(argv)
    total = args.records or (30_000 if args.quick else 300_000)
    latency_seconds = 10 if args.quick else 30

    out_dir = ROOT / "benchmarks" / "results"
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    print(f"throughput: {total:,} records ...", flush=True)
    throughput = phase_throughput(log_dir, total)
    print("latency: 1,000 records/s ...", flush=True)
    latency = phase_latency(log_dir, 1000, latency_seconds)
    print("storage: gzip ...", flush=True)
    gz = phase_throughput(log_dir, max(20_000, total // 10), compression="gzip")

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "throughput": throughput,
        "latency_at_1000_per_s": latency,
        "gzip": gz,
        "rerun": "python -m benchmarks.stage01" + (" --quick" if args.quick else ""),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"stage01-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")

    once = throughput["exactly_once"]
    rows = [
        (
            "sustained end-to-end rate",
            f"{throughput['end_to_end_records_per_s']:,} records/s",
            ">= 25,000",
        ),
        ("  producer put rate", f"{throughput['producer_records_per_s']:,} records/s", ""),
        (
            "  records / mean size",
            f"{throughput['records']:,} / {throughput['mean_record_bytes']} B",
            "~300 B",
        ),
        ("  missing / duplicated in S3", f"{once['missing']} / {once['duplicated']}", "0 / 0"),
        ("latency p50 @1,000/s", f"{latency['p50_s']} s", "<= 1 s"),
        ("latency p95 @1,000/s", f"{latency['p95_s']} s", ""),
        ("latency p99 @1,000/s", f"{latency['p99_s']} s", "<= 3 s"),
        ("consumer peak RSS", f"{throughput['consumer_peak_rss_mb']} MB", "<= 150 MB"),
        ("stored bytes/record, plain", f"{throughput['stored_bytes_per_record']}", ""),
        ("stored bytes/record, gzip", f"{gz['stored_bytes_per_record']}", ""),
    ]
    print()
    print(f"{'figure':34} {'measured':>24}   target")
    for name, value, target in rows:
        print(f"{name:34} {value:>24}   {target}")
    print(f"\nmachine: {result['machine']}")
    print(f"JSON: {path.relative_to(ROOT)}")
    print(f"rerun: .venv/bin/{result['rerun']}")
    bad = once["missing"] or once["duplicated"] or latency["visible"] < latency["records"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

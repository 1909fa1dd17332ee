"""What a detection replay costs: history arriving behind the buckets a service already scored.

    .venv/bin/python -m benchmarks.detection_replay                # 1 day of history, 5 series
    .venv/bin/python -m benchmarks.detection_replay --days 3 --series 9

A fresh emulator; one service's features rows (one metric per series, 10 s buckets) written with
pyiceberg: the last 60 buckets first, scored by a ``DetectionWorker`` in this process, then the
history before them in one commit, as the ETL appends an older hour after newer ones. The worker
then runs rounds until it has replayed. Prints the replay's wall and CPU time, the points it fed
to the rebuilt models, points per second, and the part of the time spent reading the table.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stages.common import aws
from stages.common.config import Settings
from stages.detection.worker import DetectionWorker
from stages.etl.features import ensure_features_table
from stages.etl.tables import open_catalog
from tests.detection.support import metric_rows
from tests.support.processes import start_emulator

SERVICE = "payment-service"
# The default DETECTION_SERIES, in its order: --series N takes the first N.
SERIES = (
    ("cpu", "cpu.utilization", 40.0),
    ("latency", "latency.p95", 120.0),
    ("errors", "error.rate", 1.0),
    ("requests", "request.rate", 300.0),
    ("memory", "memory.utilization", 60.0),
    ("db_query", "db.query.duration", 20.0),
    ("transactions", "transaction.rate", 50.0),
    ("fraud", "fraud.score", 5.0),
    ("queue", "queue.depth", 10.0),
)
WIDTH = 10
BUCKETS_PER_DAY = 86_400 // WIDTH
LIVE = 60


def _rows(first: int, last: int, start: float, series: int) -> Any:
    points = []
    for i in range(first, last):
        moment = datetime.fromtimestamp(start + i * WIDTH, UTC)
        rng = random.Random(i)
        for _, metric, level in SERIES[:series]:
            points.append((SERVICE, metric, moment, level * (1 + rng.gauss(0, 0.05))))
    return metric_rows(points, WIDTH)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection_replay")
    parser.add_argument("--days", type=float, default=1.0, help="history behind the live buckets")
    parser.add_argument("--series", type=int, default=5, choices=range(1, len(SERIES) + 1))
    args = parser.parse_args()
    history = int(args.days * BUCKETS_PER_DAY)
    total = history + LIVE
    start = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    series = ",".join(f"{name}=metric:{metric}:mean" for name, metric, _ in SERIES[: args.series])

    with tempfile.TemporaryDirectory() as tmp:
        emulator, endpoint = start_emulator(Path(tmp))
        try:
            settings = Settings(
                aws_endpoint_url=endpoint,
                detection_series=series,
                detection_checkpoint_seconds=3600.0,
                detection_worker_id="replay-benchmark",
            )
            table = ensure_features_table(open_catalog(settings, name="writer"))
            table.append(_rows(history, total, start, args.series))
            worker = DetectionWorker(
                settings,
                s3=aws.client("s3", settings),
                sqs=aws.client("sqs", settings),
                catalog=open_catalog(settings, name="detection"),
            )
            worker.leases.add_services(worker.reader.discover())
            worker.leases.tick()
            # Leases renewed on a thread of their own, as in the service: a long round keeps them.
            leases = threading.Thread(target=worker.leases.run, args=(worker._lease_stop,))
            leases.start()
            worker._lease_thread = leases
            worker.run_once()
            table.append(_rows(0, history, start, args.series))
            worker.run_once()  # finds the history; it waits for a round without more

            reading = [0.0]
            read_range = worker.reader.read_range

            def timed(*a: Any, **k: Any) -> Any:
                began = time.perf_counter()
                try:
                    return read_range(*a, **k)
                finally:
                    reading[0] += time.perf_counter() - began

            worker.reader.read_range = timed  # type: ignore[method-assign]
            wall, cpu = time.perf_counter(), time.process_time()
            worker.run_once()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            counts = worker.counters.snapshot()
            worker._lease_stop.set()
            leases.join()
        finally:
            emulator.stop()

    replayed = int(counts["points_replayed"])
    print(f"history {history} buckets behind {LIVE} live ones, {args.series} series")
    print(
        f"replays {int(counts['replays'])}, points replayed {replayed}, "
        f"points learned {int(counts['points_scored'])}, "
        f"skipped {int(counts['history_skipped'])}"
    )
    print(f"points discarded (lease lost) {int(counts['points_discarded'])}")
    print(f"replay round: wall {wall:.1f} s, CPU {cpu:.1f} s, table read {reading[0]:.1f} s")
    print(f"points/s: {replayed / wall:.0f} wall, {replayed / cpu:.0f} CPU")


if __name__ == "__main__":
    main()

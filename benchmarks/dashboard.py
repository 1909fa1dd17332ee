"""What the dashboard's heaviest requests cost: the partition panel over a lake with many hour
partitions over the count budget, and a gzip bomb in the log viewer and in partition counting.

    .venv/bin/python -m benchmarks.dashboard                    # 2,000 partitions, 1 GiB bomb
    .venv/bin/python -m benchmarks.dashboard --partitions 500   # smaller

A fresh emulator and a real dashboard process (``python -m stages.dashboard``) with default
settings, except a count budget small enough that every partition is over it; the dashboard
reaches the emulator through the fault proxy (no faults), which counts every S3 request it
makes. Prints one line per refresh and the bomb figures (time and the dashboard's peak RSS, with
a second dashboard on the default count budget, which the bomb fits in).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from stages.common import aws
from stages.common.config import Settings
from tests.dashboard.helpers import DashboardProcess, PeakRss, gzip_bomb, put_objects
from tests.support.fault_proxy import FaultProxy
from tests.support.processes import start_emulator

BUCKET = "md-raw-logs"


def _s3_requests(proxy: FaultProxy) -> int:
    return sum(count for op, count in proxy.received.items() if op.startswith("s3:"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard")
    parser.add_argument("--partitions", type=int, default=2_000)
    parser.add_argument("--refreshes", type=int, default=25)
    parser.add_argument("--no-bomb", action="store_true", help="only the partition refreshes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        emulator, endpoint = start_emulator(logs)
        proxy = FaultProxy(endpoint).start()
        dashboard = DashboardProcess(
            proxy.url, logs, DASHBOARD_CACHE_SECONDS="3600", DASHBOARD_COUNT_BUDGET_BYTES="100"
        )
        try:
            dashboard.wait_healthy(60)
            s3 = aws.client("s3", Settings(aws_endpoint_url=endpoint))
            objects = [
                (
                    f"service=svc-{i % 7}/year=2026/month={1 + i // 7 // 672:02d}/"
                    f"day={1 + i // 7 // 24 % 28:02d}/hour={i // 7 % 24:02d}/part-{i}.jsonl",
                    b'{"n": 1}\n' * 20,
                )
                for i in range(args.partitions)
            ]
            put_objects(s3, BUCKET, objects, threads=8)
            print(f"{args.partitions} hour partitions, each over the count budget")
            print("refresh  s3_calls  seconds  cut_short")
            for refresh in range(args.refreshes):
                before = _s3_requests(proxy)
                began = time.monotonic()
                answer = dashboard.json(f"/api/buckets/{BUCKET}/partitions")
                took = time.monotonic() - began
                calls = _s3_requests(proxy) - before
                print(f"{refresh + 1:>7}  {calls:>8}  {took:>7.2f}  {answer.get('cut_short')}")

            if args.no_bomb:
                return
            # Partition counting with the default count budget (the bomb fits in it).
            dashboard.stop()
            dashboard = DashboardProcess(proxy.url, logs)
            dashboard.wait_healthy(60)
            bomb, inflated = gzip_bomb()
            print(f"\ngzip bomb: {len(bomb):,} bytes, {inflated:,} decompressed")
            s3.put_object(Bucket="md-models", Key="bomb.jsonl.gz", Body=bomb)
            s3.put_object(
                Bucket="md-raw-apm",
                Key="service=x/year=2026/month=11/day=27/hour=06/bomb.jsonl.gz",
                Body=bomb,
            )
            for what, path, params in (
                ("viewer", "/api/buckets/md-models/object", {"key": "bomb.jsonl.gz"}),
                ("partitions", "/api/buckets/md-raw-apm/partitions", {}),
            ):
                with PeakRss(dashboard.pid) as rss:
                    began = time.monotonic()
                    answer = dashboard.get(path, **params)
                    took = time.monotonic() - began
                body = answer.json()
                said = body.get("reason") or body.get("cut_reason")
                print(
                    f"{what:<10} HTTP {answer.status_code} in {took:.2f}s, "
                    f"dashboard RSS +{rss.growth_mb:.0f} MB: {said}"
                )
        finally:
            dashboard.stop()
            proxy.stop()
            emulator.stop()


if __name__ == "__main__":
    main()

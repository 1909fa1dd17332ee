"""A running detection service learns from history generated on demand (a private fleet).

    .venv/bin/python -m benchmarks.detection_backfill              # 6 h of history, 300 records/s
    .venv/bin/python -m benchmarks.detection_backfill --hours 2

Starts every service on free ports with its own RUN_DIR (as ``./start.sh`` does; detection
scores five series every 5 s, the ETL lists old hours every 30 s), runs continuous generation,
waits until detection has scored live buckets of payment-service, then asks the orchestrator for
``--hours`` of history of payment-service ending before the live data began. The ETL folds that
history after the live hours, so it reaches ``telemetry.features`` behind buckets detection
already scored. Prints detection's counters as they move until the history is learned, and the
buckets the history holds against the buckets learned. Takes about 4 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from stages.common import aws
from stages.common.config import Settings
from stages.detection.checkpoint import CheckpointStore
from stages.detection.progress import Progress
from stages.ops import registry
from tests.ops.support import private_fleet

SERVICE = "payment-service"
SERIES = (
    "cpu=metric:cpu.utilization:mean,latency=metric:latency.p95:mean,"
    "errors=metric:error.rate:mean,requests=metric:request.rate:mean,"
    "memory=metric:memory.utilization:mean"
)
COUNTERS = ("points_scored", "replays", "points_replayed", "history_skipped")
WIDTH = 10


def _log(*parts: Any) -> None:
    print(datetime.now(UTC).strftime("%H:%M:%S"), *parts, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection_backfill")
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--rate", type=int, default=300, help="live records per second")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = private_fleet(
            Path(tmp),
            DETECTION_INTERVAL_SECONDS="5",
            DETECTION_SERIES=SERIES,
            ETL_FULL_LISTING_SECONDS="30",
        )
        http = httpx.Client(timeout=60)

        def status() -> dict[str, Any]:
            answer = http.get(run.url("detection") + "/api/status").json()
            mine = answer["services"].get(SERVICE, {})
            return {
                **{name: int(answer["counters"][name]) for name in COUNTERS},
                "mark": mine.get("mark"),
                "history_waiting": mine.get("history_waiting"),
            }

        try:
            started = run.cli("start", *(s.name for s in registry.SERVICES), timeout=900)
            if started.returncode != 0:
                raise RuntimeError(f"the fleet did not start:\n{started.stdout}{started.stderr}")
            orchestrator = run.url("scenario-orchestrator")
            live_start = datetime.now(UTC)
            body = {"interval_seconds": 1, "logs_per_interval": args.rate,
                    "duration_seconds": args.timeout + 600}  # fmt: skip
            http.post(orchestrator + "/api/continuous/start", json=body).raise_for_status()
            deadline = time.monotonic() + args.timeout
            while (now := status())["mark"] is None and time.monotonic() < deadline:
                time.sleep(5)
            _log("live scored", now)

            end = (live_start - timedelta(minutes=2)).replace(microsecond=0)
            start = end - timedelta(hours=args.hours)
            request = {"start": start.isoformat(), "end": end.isoformat(),
                       "services": [SERVICE], "seed": 3, "resolution_seconds": WIDTH}  # fmt: skip
            answer = http.post(orchestrator + "/api/history", json=request)
            answer.raise_for_status()
            history = answer.json()["id"]
            before = now = status()
            _log(f"history {start:%H:%M:%S}-{end:%H:%M:%S} asked", before)
            # Done when the history run is over and no replay has come or waited for 60 s (the
            # ETL's full listing every 30 s brings the older hours).
            settled = time.monotonic()
            while time.monotonic() < deadline:
                run_state = http.get(f"{orchestrator}/api/history/{history}").json()["status"]
                previous, now = now, status()
                _log("history", run_state, "| detection", now)
                if now["replays"] != previous["replays"] or now["history_waiting"]:
                    settled = time.monotonic()
                if run_state != "running" and now["replays"] and time.monotonic() - settled > 60:
                    break
                time.sleep(10)
            # The history's buckets in the service's checkpointed progress (read, not waiting).
            settings = Settings(aws_endpoint_url=f"http://127.0.0.1:{run.emulator_port}")
            saved = CheckpointStore(aws.client("s3", settings), "md-models").load(SERVICE)
            progress = Progress.restore(saved.mark, saved.progress, WIDTH) if saved else Progress()
            # The history has one value per series every WIDTH seconds from its start.
            steps = round((end - start).total_seconds() / WIDTH)
            slots = {
                math.floor((start.timestamp() + k * WIDTH) / WIDTH) * WIDTH for k in range(steps)
            }
            read = sum(1 for t in slots if t in progress.seen and t not in progress.pending)
            print(
                f"history: {len(slots)} buckets, {read} of them read and "
                f"learned by {SERVICE} (checkpoint generation "
                f"{saved.generation if saved else None}); counters since it was asked (every "
                f"service, live buckets included): points_scored "
                f"+{now['points_scored'] - before['points_scored']}, history_skipped "
                f"+{now['history_skipped'] - before['history_skipped']}, replays "
                f"{now['replays'] - before['replays']}, points_replayed "
                f"+{now['points_replayed'] - before['points_replayed']}"
            )
        finally:
            with contextlib.suppress(httpx.HTTPError):
                http.post(run.url("scenario-orchestrator") + "/api/continuous/stop")
            run.stop_all()


if __name__ == "__main__":
    main()

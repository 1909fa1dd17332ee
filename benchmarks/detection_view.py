"""What the detection view's reads cost over days of 10 s features.

    .venv/bin/python -m benchmarks.detection_view             # 3 days, 2 services, 5 repeats
    .venv/bin/python -m benchmarks.detection_view --days 1

A fresh emulator; features rows (cpu.utilization, latency.p95 and a metric no series reads, per
service and 10 s bucket, one-bucket cpu spike on the first service) written with pyiceberg, one
commit per day; then the view's router (``stages/detection/view.py``, in this process under
TestClient, so no detection loop competes for the CPU) is asked for the services and for the
signals of the first service over the last 1 h, 6 h and the whole range. Prints the median and
the maximum of the repeats, the buckets read and the points returned.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stages.common.config import Settings
from stages.etl.features import ensure_features_table
from stages.etl.tables import open_catalog
from tests.detection.view_support import feature_rows
from tests.support.processes import start_emulator

SERIES = "cpu=metric:cpu.utilization:mean,latency=metric:latency.p95:mean"
SERVICES = ("payment-service", "auth-service")
BUCKETS_PER_DAY = 8640


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection_view")
    parser.add_argument("--days", type=int, default=3, choices=range(1, 8))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    # The in-process client's Host header, as the tests' conftest allows it.
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    from fastapi.testclient import TestClient

    from stages.common.service import create_service_app
    from stages.detection import view

    with tempfile.TemporaryDirectory() as tmp:
        emulator, endpoint = start_emulator(Path(tmp))
        try:
            settings = Settings(aws_endpoint_url=endpoint, detection_series=SERIES)
            table = ensure_features_table(open_catalog(settings, name="writer"))
            start = datetime(2026, 12, 1, tzinfo=UTC)
            began = time.monotonic()
            for day in range(args.days):
                rows = feature_rows(
                    SERVICES, start + timedelta(days=day), BUCKETS_PER_DAY, spike=4321
                )
                table.append(rows)
            rows_written = len(SERVICES) * 3 * BUCKETS_PER_DAY * args.days
            print(f"{rows_written:,} features rows written in {time.monotonic() - began:.1f} s")
            app = create_service_app("detection", routers=[view.router(settings)])
            client = TestClient(app)
            end = start + timedelta(days=args.days)

            def timed(path: str, params: dict[str, str] | None = None) -> tuple[str, Any]:
                took = []
                for _ in range(args.repeats):
                    t0 = time.monotonic()
                    answer = client.get(path, params=params)
                    took.append(time.monotonic() - t0)
                    assert answer.status_code == 200, answer.text
                figures = f"median {statistics.median(took):6.3f} s  max {max(took):6.3f} s"
                return figures, answer.json()

            figures, services = timed("/api/signals/services")
            print(f"/api/signals/services      {figures}  {len(services)} services")
            for label, span in (
                ("1 h", timedelta(hours=1)),
                ("6 h", timedelta(hours=6)),
                (f"{args.days} d", timedelta(days=args.days)),
            ):
                params = {
                    "service": SERVICES[0],
                    "from": (end - span).isoformat(),
                    "to": end.isoformat(),
                }
                figures, body = timed("/api/signals", params)
                print(
                    f"/api/signals {label:<13} {figures}  {body['buckets']:>6} buckets -> "
                    f"{len(body['timestamps'])} points (groups of "
                    f"{body['downsampled_seconds'] or 10:g} s)"
                )
        finally:
            emulator.stop()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (machine: {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

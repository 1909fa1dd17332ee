"""The benchmark's private fleet: started the way ./start.sh starts it (free ports, its own
RUN_DIR and DATA_DIR), driven over its HTTP APIs."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stages.common.config import Settings
from stages.ops import registry
from tests.ops.support import FleetRun, private_fleet

CONSUMER = "kinesis-consumer"
# The path these benchmarks measure ends in the raw zone: the Stage 02 ETL and the detection
# engine, which read the lake afterwards, are not started (they have benchmarks of their own).
PIPELINE_SERVICES = tuple(s.name for s in registry.SERVICES if s.name not in {"etl", "detection"})


@dataclass
class Generation:
    requested_per_s: float
    stats: dict[str, Any]
    ended: float  # monotonic; at most one stats poll after the generator's last call returned

    @property
    def achieved_per_s(self) -> float:
        return float(self.stats["measured_rate"])

    @property
    def seconds(self) -> float:
        return float(self.stats["elapsed_seconds"])


class PipelineFleet:
    """A private fleet (free ports, its own RUN_DIR and DATA_DIR) driven over its HTTP APIs."""

    def __init__(self, root: Path) -> None:
        self.run: FleetRun = private_fleet(root)
        if self.run.run_dir.exists():
            # A benchmark killed outright leaves its fleet running: stop what its pid files name.
            self.run.cli("stop", "--timeout", "30", timeout=600)
        shutil.rmtree(root, ignore_errors=True)
        self.data_dir = root / "data"
        self.settings = Settings(aws_endpoint_url=f"http://127.0.0.1:{self.run.emulator_port}")
        self.http = httpx.Client(timeout=30)

    def start(self) -> tuple[float, dict[str, float]]:
        """Seconds until ``fleet start`` returned (all healthy), and each service's own time
        to healthy as the CLI reports it (counted from the start of its dependency level)."""
        began = time.monotonic()
        result = self.run.cli("start", *PIPELINE_SERVICES, timeout=300)
        took = time.monotonic() - began
        if result.returncode != 0:
            raise RuntimeError(f"the fleet did not start:\n{result.stdout}\n{result.stderr}")
        return took, healthy_after(result.stdout)

    def stop(self) -> None:
        self.run.cli("stop", "--timeout", "30", timeout=600)
        self.http.close()

    def restart_consumer(self, **env: str) -> None:
        self.run.cli("stop", CONSUMER, timeout=120)
        result = self.run.cli("start", CONSUMER, timeout=120, **env)
        if result.returncode != 0:
            raise RuntimeError(f"the consumer did not restart:\n{result.stdout}")

    def get(self, service: str, path: str) -> dict[str, Any]:
        resp = self.http.get(self.run.url(service) + path)
        if service != CONSUMER:  # the consumer's /health is 503 while it starts, with the body
            resp.raise_for_status()
        return resp.json()

    def consumer_records_out(self) -> int:
        return int(self.get(CONSUMER, "/health")["records_out"])

    def ingestion_counters(self) -> dict[str, int]:
        return self.get("ingestion-interface", "/api/metrics")["counters"]

    def generate(self, rate: int, seconds: float, interval: float) -> Generation:
        """One continuous-generation run at ``rate`` records/s; returns when its calls are done."""
        per_tick = max(1, round(rate * interval))
        body = {"interval_seconds": interval, "logs_per_interval": per_tick,
                "duration_seconds": seconds}  # fmt: skip
        orchestrator = self.run.url("scenario-orchestrator")
        self.http.post(orchestrator + "/api/continuous/start", json=body).raise_for_status()
        deadline = time.monotonic() + seconds + 300
        while True:
            time.sleep(0.1)  # often: the drain time is counted from when the end is seen
            stats = self.get("scenario-orchestrator", "/api/continuous/stats")
            if not stats["running"]:
                return Generation(per_tick / interval, stats, time.monotonic())
            if time.monotonic() > deadline:
                self.http.post(orchestrator + "/api/continuous/stop")
                raise RuntimeError(f"generation at {rate}/s still running after {seconds + 300}s")

    def wait_delivered(
        self, baseline: int, expected: int, cap: float, since: float | None = None
    ) -> float | None:
        """Seconds from ``since`` (monotonic; default now) until the consumer has written
        ``expected`` records more than ``baseline``; None when that takes over ``cap``."""
        began = time.monotonic() if since is None else since
        while time.monotonic() - began <= cap:
            if self.consumer_records_out() - baseline >= expected:
                return time.monotonic() - began
            time.sleep(0.1)
        return None


def healthy_after(cli_output: str) -> dict[str, float]:
    """``<service>: healthy after 3.2s`` lines of the fleet CLI, as {service: seconds}."""
    found = {}
    for line in cli_output.splitlines():
        name, _, rest = line.strip().partition(": healthy after ")
        if rest.endswith("s"):
            try:
                found[name] = float(rest[:-1])
            except ValueError:
                continue
    return found

"""Test helpers for the dashboard: its real process, objects put straight into the lake."""

from __future__ import annotations

import struct
import sys
import threading
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import (
    START_TIMEOUT_SECONDS,
    Process,
    base_env,
    free_port,
    wait_http_ok,
)

HOUR = "year=2026/month=11/day=27/hour=06"


class DashboardProcess(Process):
    """``python -m stages.dashboard`` on a free port, talking to the emulator at ``endpoint``.

    The consumer port defaults to a free port nobody listens on (a consumer that is down)."""

    def __init__(self, endpoint: str, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        env.setdefault("CONSUMER_PORT", str(free_port()))
        super().__init__(
            f"dashboard-{self.port}",
            [sys.executable, "-m", "stages.dashboard"],
            base_env(endpoint, DASHBOARD_PORT=str(self.port), **env),
            log_dir,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        wait_http_ok(f"{self.url}/health", self, timeout)

    def get(self, path: str, **params: Any) -> httpx.Response:
        # httpx replaces a query string in ``path`` with ``params`` when any are given.
        return self.client.get(path, params=params or None)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def metric(self, name: str, **labels: str) -> float:
        text = self.client.get("/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def stop(self) -> None:
        self.client.close()
        super().stop()


def jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def log_record(i: int, *, service: str = "api-gateway", anomalous: bool = False, **extra: Any):
    record: dict[str, Any] = {
        "event_id": f"evt-{i:08d}",
        "timestamp": f"2026-11-27T06:{(i // 60) % 60:02d}:{i % 60:02d}.000Z",
        "kind": "log",
        "service": service,
        "level": "ERROR" if anomalous else "INFO",
        "message": f"request {i} processed",
        "is_anomaly": anomalous,
        "attributes": {"n": i},
    }
    if anomalous:
        record.update(anomaly_type="cpu_spike", anomaly_score=90.0)
    record.update(extra)
    return record


def put_objects(s3: Any, bucket: str, objects: Sequence[tuple[str, bytes]], threads: int = 4):
    """Put many objects concurrently (the emulator answers each in a few milliseconds)."""

    def put(item: tuple[str, bytes]) -> None:
        s3.put_object(Bucket=bucket, Key=item[0], Body=item[1])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, objects))


def gzip_bomb(segments: int = 16) -> tuple[bytes, int]:
    """A valid single-member gzip of ``segments`` x 64 MiB of zeros (16: 1 GiB in about 1 MB)
    and its decompressed size.

    Built in about a second instead of compressing a gigabyte: after a full flush deflate
    forgets its history, so every 64 MiB of zeros compresses to the same bytes, which are
    repeated; the trailer's CRC is computed over the real content.
    """
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    segment = b"".join(deflate.compress(zeros) for _ in range(64))
    segment += deflate.flush(zlib.Z_FULL_FLUSH)
    size = segments * 64 * len(zeros)
    crc = 0
    for _ in range(size // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + segment * segments + deflate.flush(zlib.Z_FINISH) + trailer, size


class PeakRss:
    """The highest resident memory of process ``pid`` while the block runs, sampled every
    20 ms (a spike shorter than that can be missed; a decompressed gigabyte cannot)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 1e6

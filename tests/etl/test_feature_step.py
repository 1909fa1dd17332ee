"""The ETL's features thread runs on the clock: right after each bucket's watermark, so a closed
bucket is written as soon as it may be (what live detection waits for), and a commit's
partitions join the next of those runs instead of adding a rebuild of their own."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from stages.common.config import Settings
from stages.etl.app import WATERMARK_MARGIN_SECONDS, FeatureStep


class RecordingBuilder:
    """Stands in for FeatureBuilder: records when the thread asked for a rebuild, and what."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, set[Any]]] = []
        self.primed: list[Any] = []
        self.called = threading.Event()

    def prime(self, files: list[Any]) -> None:
        self.primed.extend(files)

    def after_commit(self, touched: set[Any], now: datetime) -> None:
        self.calls.append((time.time(), set(touched)))
        self.called.set()


def step(bucket: int, lateness: float, interval: float) -> FeatureStep:
    settings = Settings(
        features_bucket_seconds=bucket,
        features_allowed_lateness_seconds=lateness,
        etl_interval_seconds=interval,
    )
    return FeatureStep(catalog=None, settings=settings)


def test_the_next_run_is_just_after_the_next_watermark() -> None:
    features = step(bucket=10, lateness=25.0, interval=10.0)
    # At 1000 s the bucket [970, 980) is the next to close: at 980 + 25.
    assert features.next_run(1000.0) == pytest.approx(1005.0 + WATERMARK_MARGIN_SECONDS)
    # Just after it: the bucket after, one width later.
    assert features.next_run(1005.0 + 2 * WATERMARK_MARGIN_SECONDS) == pytest.approx(
        1015.0 + WATERMARK_MARGIN_SECONDS
    )
    # Hour-wide buckets: still once per fold interval (late records and touched partitions).
    assert step(bucket=3600, lateness=30.0, interval=10.0).next_run(1000.0) == 1010.0


def test_the_thread_writes_each_bucket_at_its_watermark_not_at_each_commit() -> None:
    features = step(bucket=2, lateness=0.5, interval=60.0)
    builder = RecordingBuilder()
    features.builder = builder  # type: ignore[assignment]
    features.start()
    try:
        time.sleep(4.6)
        # A commit just after a run: its partition waits for the next watermark.
        builder.called.clear()
        assert builder.called.wait(30.0)  # one every 2 s; generous for a loaded machine
        committed_at = time.time()
        partition = SimpleNamespace(table="telemetry.logs", service="svc", dt="2026-12-01", hr=3)
        features.after_commit(SimpleNamespace(partitions=[partition], files=[]))
        deadline = time.time() + 30.0
        while time.time() < deadline and not any(touched for _, touched in builder.calls):
            time.sleep(0.05)
    finally:
        features.stop(5)
    # With no fold interval in 60 s, the runs came from the watermarks: every 2 s, 0.5 s after
    # a bucket boundary.
    assert len(builder.calls) >= 3, builder.calls
    for at, _ in builder.calls:
        phase = (at - 0.5) % 2
        assert WATERMARK_MARGIN_SECONDS - 0.01 <= phase <= 0.5, (at, phase)
    (with_commit,) = [(at, touched) for at, touched in builder.calls if touched]
    assert with_commit[1] == {("telemetry.logs", "svc", "2026-12-01", 3)}
    # Not at once (the commit's wake is not a run), at the next watermark: measured from that
    # watermark, not from a fixed second after the commit, which a stalled test thread may
    # take well after the run it waited for.
    watermark = (math.floor((committed_at - 0.5) / 2) + 1) * 2 + 0.5  # 0.5 s after a boundary
    assert with_commit[0] >= watermark - 0.01, (with_commit[0], committed_at, watermark)

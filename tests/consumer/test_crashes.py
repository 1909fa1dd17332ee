"""Crashes and takeovers: SIGKILL at random moments, and two consumers sharing a stream."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from stages.common import aws
from stages.common.config import Settings
from tests.support.lake import (
    ConsumerProcess,
    assert_exactly_once,
    make_record,
    put_aggregated,
    put_plain,
    wait_for_lines,
)
from tests.support.processes import start_emulator

LOGS = "stage01-logs-stream"


class Feeder(threading.Thread):
    """Puts records in small batches over a few seconds, alternating plain and aggregated."""

    def __init__(self, settings: Settings, total: int, batch: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.kinesis = aws.client("kinesis", settings)
        self.records = [make_record(i) for i in range(total)]
        self.batch = batch
        self.pause = pause
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for n, start in enumerate(range(0, len(self.records), self.batch)):
                chunk = self.records[start : start + self.batch]
                if n % 2:
                    put_aggregated(self.kinesis, LOGS, chunk, per_aggregate=50)
                else:
                    put_plain(self.kinesis, LOGS, chunk)
                time.sleep(self.pause)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    endpoint: str, settings: Settings, proc_logs: Path
) -> None:
    s3 = aws.client("s3", settings)
    # Small flushes so that kills land between pending, upload and checkpoint often.
    env = {
        "FLUSH_MAX_RECORDS": "300",
        "FLUSH_MAX_AGE_SECONDS": "0.5",
        "LEASE_DURATION_SECONDS": "2",
        "CONSUMER_STREAMS": "logs",
    }
    feeder = Feeder(settings, total=20_000, batch=500, pause=0.25)
    rng = random.Random(20261127)
    consumer = ConsumerProcess(endpoint, proc_logs, **env)
    consumer.wait_healthy()
    feeder.start()
    kills = 0
    try:
        for _ in range(5):
            time.sleep(rng.uniform(0.5, 2.5))
            consumer.kill()
            kills += 1
            consumer = ConsumerProcess(endpoint, proc_logs, **env)
            consumer.wait_healthy()
        feeder.join(120)
        assert feeder.error is None, feeder.error
        lines = wait_for_lines(s3, "md-raw-logs", len(feeder.records), timeout=120, proc=consumer)
        # Let a last flush land so late duplicates would show up too.
        time.sleep(2)
        lines = wait_for_lines(s3, "md-raw-logs", len(feeder.records), timeout=5, proc=consumer)
        assert_exactly_once(lines, feeder.records)
        assert kills == 5
    finally:
        consumer.stop()


def test_two_consumers_split_shards_and_one_takes_over_when_the_other_dies(
    proc_logs: Path,
) -> None:
    emulator, endpoint = start_emulator(proc_logs, LOGS_STREAM_SHARDS="4")
    settings = Settings(aws_endpoint_url=endpoint)
    s3 = aws.client("s3", settings)
    lease_seconds = 3.0
    env = {
        "CONSUMER_STREAMS": "logs",
        "LEASE_DURATION_SECONDS": str(lease_seconds),
        "FLUSH_MAX_RECORDS": "500",
    }
    a = ConsumerProcess(endpoint, proc_logs, name="consumer-a", **env)
    b = ConsumerProcess(endpoint, proc_logs, name="consumer-b", **env)
    try:
        a.wait_healthy()
        b.wait_healthy()
        assert len(aws.client("kinesis", settings).list_shards(StreamName=LOGS)["Shards"]) == 4

        deadline = time.monotonic() + 30
        while True:
            owned_a, owned_b = a.owned_shards(), b.owned_shards()
            if len(owned_a) == 2 and len(owned_b) == 2:
                break
            assert time.monotonic() < deadline, f"not balanced: a={owned_a} b={owned_b}"
            time.sleep(0.5)
        assert not owned_a & owned_b

        feeder = Feeder(settings, total=12_000, batch=400, pause=0.2)
        feeder.start()
        time.sleep(2)
        a.kill()
        killed_at = time.monotonic()
        while len(b.owned_shards()) < 4:
            # KCL-style expiry: the lease duration plus one coordination round.
            assert time.monotonic() - killed_at < lease_seconds + 2.5, b.owned_shards()
            time.sleep(0.1)
        takeover = time.monotonic() - killed_at
        assert b.owned_shards() == owned_a | owned_b

        feeder.join(120)
        assert feeder.error is None, feeder.error
        lines = wait_for_lines(s3, "md-raw-logs", len(feeder.records), timeout=120, proc=b)
        time.sleep(2)
        lines = wait_for_lines(s3, "md-raw-logs", len(feeder.records), timeout=5, proc=b)
        assert_exactly_once(lines, feeder.records)
        assert b.metric("consumer_leases_taken_total") >= 4
        print(f"takeover after SIGKILL: {takeover:.1f}s (lease duration {lease_seconds}s)")
    finally:
        a.stop()
        b.stop()
        emulator.stop()

"""Faults injected for real, by an HTTP proxy between the consumer and the emulator."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stages.common import aws
from stages.common.config import Settings
from stages.consumer.leases import DynamoLeaseStore
from stages.ingestion.producer import KinesisProducer
from tests.support.fault_proxy import FaultProxy
from tests.support.lake import (
    ConsumerProcess,
    assert_exactly_once,
    make_record,
    put_plain,
    wait_for_lines,
)

LOGS = "stage01-logs-stream"


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(endpoint, seed=7) as running:
        yield running


def test_injected_aws_faults_lose_and_duplicate_nothing_and_are_counted(
    endpoint: str, settings: Settings, proc_logs: Path, proxy: FaultProxy
) -> None:
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(
        proxy.url, proc_logs, CONSUMER_MAX_BACKOFF_SECONDS="0.2", FLUSH_MAX_RECORDS="500"
    )
    consumer.wait_healthy()
    proxy.configure(
        putrecords_partial=0.2,
        putrecords_throttle=0.2,
        getrecords_throttle=0.2,
        getrecords_expired=0.1,
        s3_put_error=0.2,
    )
    sent = [make_record(i) for i in range(20_000)]
    producer = KinesisProducer(
        LOGS, Settings(aws_endpoint_url=proxy.url), max_retries=50, max_backoff_seconds=0.2
    )
    try:
        for start in range(0, len(sent), 2_000):
            producer.put_many(sent[start : start + 2_000], timeout=120)
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=120, proc=consumer)
        time.sleep(1.5)  # a late duplicate would land within a flush age
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=5, proc=consumer)
        assert_exactly_once(lines, sent)

        # Stop injecting; calls already answered with a fault may still be on their way back.
        proxy.clear()
        injected = dict(proxy.injected)
        faults = ("putrecords_partial_entries", "putrecords_throttle", "getrecords_throttle")
        faults += ("getrecords_expired", "s3_put_error")
        assert all(injected.get(fault, 0) > 0 for fault in faults), injected
        # The producer re-sent exactly what failed; the consumer saw and counted every fault.
        stats = producer.stats()
        assert stats.records_failed == 0
        assert stats.throttled_calls == injected["putrecords_throttle"]
        wanted = {
            "throttles": injected["getrecords_throttle"],
            "expired": injected["getrecords_expired"],
            "put_object_retries": injected["s3_put_error"],
        }

        def counted() -> dict[str, float]:
            return {
                "throttles": consumer.metric("consumer_throttles_total"),
                "expired": consumer.metric("consumer_expired_iterators_total"),
                "put_object_retries": consumer.metric(
                    "consumer_retries_total", operation="PutObject"
                ),
            }

        deadline = time.monotonic() + 10
        while counted() != wanted and time.monotonic() < deadline:
            time.sleep(0.2)
        assert counted() == wanted
        assert consumer.metric("consumer_records_out_total") == len(sent)
    finally:
        proxy.clear()
        producer.close(10)
        consumer.stop()


def test_kills_in_the_middle_of_a_flush_rewrite_the_same_objects(
    endpoint: str, settings: Settings, proc_logs: Path, proxy: FaultProxy
) -> None:
    """SIGKILL after the pending range is recorded and while its objects are being uploaded.

    Slow AWS calls (the proxy delays each one) widen the window between 'pending' and the
    checkpoint, and the test waits until a lease shows a pending range before it kills.
    """
    s3 = aws.client("s3", settings)
    store = DynamoLeaseStore(aws.client("dynamodb", settings), settings.lease_table)
    env = {
        "CONSUMER_STREAMS": "logs",
        "LEASE_DURATION_SECONDS": "2",
        "FLUSH_MAX_AGE_SECONDS": "0.5",
    }
    proxy.configure(delay=0.08)
    sent = [make_record(i) for i in range(8_000)]
    kinesis = aws.client("kinesis", settings)

    def feed() -> None:
        for start in range(0, len(sent), 400):
            put_plain(kinesis, LOGS, sent[start : start + 400])
            time.sleep(0.3)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    rng = random.Random(5)
    consumers = [ConsumerProcess(proxy.url, proc_logs, **env)]
    mid_flush_kills = 0
    try:
        consumers[-1].wait_healthy()
        deadline = time.monotonic() + 90
        while mid_flush_kills < 4:
            assert time.monotonic() < deadline, "never caught a flush in progress"
            if not any(lease.pending_end for lease in store.list()):
                time.sleep(0.01)
                continue
            time.sleep(rng.uniform(0.0, 0.25))  # somewhere among the uploads
            consumers[-1].kill()
            mid_flush_kills += 1
            consumers.append(ConsumerProcess(proxy.url, proc_logs, **env))
            consumers[-1].wait_healthy()
        feeder.join(60)
        proxy.clear()
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=90, proc=consumers[-1])
        time.sleep(1.5)
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=5, proc=consumers[-1])
        assert_exactly_once(lines, sent)
        # The restarted consumers really found unfinished flushes and replayed them.
        logs = "".join(c.log_path.read_text() for c in consumers)
        assert logs.count("replaying unfinished flush") >= 1
    finally:
        for consumer in consumers:
            consumer.stop()

"""Flush triggers, shutdown, resharding and dead letters, against real processes."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import orjson

from stages.common import aws
from stages.common.config import Settings
from stages.consumer.leases import DynamoLeaseStore
from tests.support.lake import (
    ConsumerProcess,
    assert_exactly_once,
    count_objects,
    make_record,
    put_plain,
    read_bucket,
    wait_for_lines,
)

LOGS = "stage01-logs-stream"


def test_age_flush_happens_without_new_data(
    endpoint: str, settings: Settings, proc_logs: Path
) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    # Long enough that the "not yet" check below comes well inside it on a loaded machine.
    age = 5
    consumer = ConsumerProcess(endpoint, proc_logs, FLUSH_MAX_AGE_SECONDS=str(age))
    try:
        consumer.wait_healthy()
        sent = [make_record(i) for i in range(10)]
        put_plain(kinesis, LOGS, sent)
        put_at = time.monotonic()
        # Read promptly, but held back: nothing is visible before the age limit. Checked as
        # soon as everything is read (polled: a loaded machine may read later than usual).
        deadline = time.monotonic() + 30
        while consumer.metric("consumer_buffered_records") < len(sent):
            assert time.monotonic() < deadline, consumer.log_tail()
            time.sleep(0.1)
        assert consumer.health()["owned_shards"] and count_objects(s3, "md-raw-logs") == 0
        assert consumer.metric("consumer_buffered_records") == len(sent)
        assert consumer.metric("consumer_oldest_unflushed_record_age_seconds") > 0
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=30, proc=consumer)
        # Flushed by its age, not held until something else (new data, the stop) came along.
        assert time.monotonic() - put_at < age + 10
        assert_exactly_once(lines, sent)
        assert consumer.metric("consumer_flushes_total", reason="age") >= 1
        assert consumer.metric("consumer_buffered_records") == 0
    finally:
        consumer.stop()


def _objects(lines) -> dict[str, list[dict]]:
    per_object: dict[str, list[dict]] = {}
    for line in lines:
        per_object.setdefault(line.key, []).append(line.record)
    return per_object


def test_count_limit_cuts_objects(endpoint: str, settings: Settings, proc_logs: Path) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(
        endpoint, proc_logs, FLUSH_MAX_AGE_SECONDS="600", FLUSH_MAX_RECORDS="100"
    )
    try:
        consumer.wait_healthy()
        # One service and hour: every record on one shard and in one partition.
        sent = [make_record(i, services=["api-gateway"], hours=1) for i in range(1_000)]
        put_plain(kinesis, LOGS, sent)
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=30, proc=consumer)
        assert_exactly_once(lines, sent)
        assert max(len(records) for records in _objects(lines).values()) <= 100
        assert consumer.metric("consumer_flushes_total", reason="count") >= 10
    finally:
        consumer.stop()


def test_size_limit_cuts_objects(endpoint: str, settings: Settings, proc_logs: Path) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    limit = 20_000
    consumer = ConsumerProcess(
        endpoint, proc_logs, FLUSH_MAX_AGE_SECONDS="5", FLUSH_MAX_BYTES=str(limit)
    )
    try:
        consumer.wait_healthy()
        sent = [make_record(i, services=["api-gateway"], hours=1) for i in range(1_000)]
        put_plain(kinesis, LOGS, sent)
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=30, proc=consumer)
        assert_exactly_once(lines, sent)
        biggest = max(
            s3.head_object(Bucket="md-raw-logs", Key=key)["ContentLength"]
            for key in _objects(lines)
        )
        # A flush starts once the limit is reached, so an object holds at most one record more
        # (the last, smaller object is the tail, flushed by age).
        assert limit <= biggest < limit + 400
        assert consumer.metric("consumer_flushes_total", reason="size") >= 10
    finally:
        consumer.stop()


def test_too_many_open_partitions_force_a_flush(
    endpoint: str, settings: Settings, proc_logs: Path
) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(
        endpoint, proc_logs, FLUSH_MAX_AGE_SECONDS="5", MAX_OPEN_PARTITIONS="4"
    )
    try:
        consumer.wait_healthy()
        sent = [make_record(i) for i in range(500)]  # 5 services x 4 hours = 20 partitions
        put_plain(kinesis, LOGS, sent)
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=30, proc=consumer)
        assert_exactly_once(lines, sent)
        assert consumer.metric("consumer_flushes_total", reason="open_partitions") >= 1
        assert consumer.metric("consumer_open_partitions") <= 4
    finally:
        consumer.stop()


def test_sigterm_flushes_everything_open_and_releases_leases(
    endpoint: str, settings: Settings, proc_logs: Path
) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(endpoint, proc_logs, FLUSH_MAX_AGE_SECONDS="600")
    consumer.wait_healthy()
    sent = [make_record(i) for i in range(3_000)]
    put_plain(kinesis, LOGS, sent)
    deadline = time.monotonic() + 30
    while consumer.metric("consumer_buffered_records") < len(sent):
        assert time.monotonic() < deadline, consumer.log_tail()
        time.sleep(0.2)
    assert count_objects(s3, "md-raw-logs") == 0
    assert consumer.terminate(timeout=30) == 0
    assert_exactly_once(read_bucket(s3, "md-raw-logs"), sent)
    store = DynamoLeaseStore(aws.client("dynamodb", settings), settings.lease_table)
    assert all(lease.owner is None for lease in store.list())


def test_children_are_read_after_the_parent_is_finished(
    endpoint: str, settings: Settings, proc_logs: Path
) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(
        endpoint, proc_logs, CONSUMER_STREAMS="logs", SHARD_SYNC_INTERVAL_SECONDS="1"
    )
    try:
        consumer.wait_healthy()
        before = [make_record(i) for i in range(1_000)]
        put_plain(kinesis, LOGS, before)
        shard = kinesis.list_shards(StreamName=LOGS)["Shards"][0]
        low = int(shard["HashKeyRange"]["StartingHashKey"])
        high = int(shard["HashKeyRange"]["EndingHashKey"])
        kinesis.split_shard(
            StreamName=LOGS,
            ShardToSplit=shard["ShardId"],
            NewStartingHashKey=str((low + high) // 2),
        )
        after = [make_record(i) for i in range(1_000, 2_000)]
        put_plain(kinesis, LOGS, after)
        sent = before + after
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=60, proc=consumer)
        assert_exactly_once(lines, sent)

        leases = {
            lease.shard_id: lease
            for lease in DynamoLeaseStore(
                aws.client("dynamodb", settings), settings.lease_table
            ).list()
        }
        parent = leases[shard["ShardId"]]
        children = [lease for lease in leases.values() if shard["ShardId"] in lease.parents]
        assert len(children) == 2
        assert parent.finished and parent.finished_at_ms is not None
        for child in children:
            # Children that received records were started, and only after the parent ended.
            if child.started_at_ms is not None:
                assert child.started_at_ms >= parent.finished_at_ms
        assert any(child.started_at_ms is not None for child in children)
        # Records written after the split came from the children, not the closed parent.
        child_ids = {child.shard_id for child in children}
        after_ids = {r["event_id"] for r in after}
        after_keys = {line.key for line in lines if line.record["event_id"] in after_ids}
        assert any(any(cid in key for cid in child_ids) for key in after_keys)
    finally:
        consumer.stop()


def test_unparsable_records_go_to_the_dead_letter_prefix_only(
    endpoint: str, settings: Settings, proc_logs: Path
) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    bad = [b"not json at all", b"[1, 2, 3]", orjson.dumps({"message": "no service"})]
    for data in bad:
        kinesis.put_record(StreamName=LOGS, Data=data, PartitionKey="bad")
    good = [make_record(i) for i in range(100)]
    put_plain(kinesis, LOGS, good)
    consumer = ConsumerProcess(endpoint, proc_logs)
    try:
        consumer.wait_healthy()
        lines = wait_for_lines(s3, "md-raw-logs", len(good), timeout=30, proc=consumer)
        deadline = time.monotonic() + 10
        while consumer.metric("consumer_dead_letters_total") < len(bad):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert_exactly_once(lines, good)  # nothing bad among the service partitions
        dead = [line for line in read_bucket(s3, "md-raw-logs") if line.key.startswith("_")]
        assert all(
            line.key.startswith("_dead-letter/stream=stage01-logs-stream/year=") for line in dead
        )
        payloads = {base64.b64decode(line.record["data_base64"]): line.record for line in dead}
        assert set(payloads) == set(bad)
        assert "not valid JSON" in payloads[bad[0]]["reason"]
        assert "not a JSON object" in payloads[bad[1]]["reason"]
        assert "service" in payloads[bad[2]]["reason"]
        assert all(p["sequence_number"] and p["shard_id"] for p in payloads.values())
        assert consumer.metric("consumer_dead_letters_total") == len(bad)
    finally:
        consumer.stop()

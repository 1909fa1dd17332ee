"""Stage 01 end to end on a real emulator: Kinesis -> consumer -> Hive-partitioned S3."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb

from stages.common import aws
from stages.common.config import Settings
from stages.common.lake import list_objects
from tests.support.lake import (
    ConsumerProcess,
    assert_exactly_once,
    expected_prefix,
    make_record,
    put_aggregated,
    put_plain,
    wait_for_lines,
)

LOGS = "stage01-logs-stream"


def _mirror_bucket(s3, bucket: str, into: Path) -> None:
    """Copy a bucket to disk key by key, so DuckDB reads the same layout Athena would."""
    for obj in list_objects(s3, bucket):
        target = into / obj["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())


def test_plain_and_aggregated_records_land_exactly_once_in_their_partitions(
    endpoint: str, settings: Settings, proc_logs: Path, tmp_path: Path
) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(endpoint, proc_logs)
    try:
        consumer.wait_healthy()
        plain = [make_record(i) for i in range(11_000)]
        aggregated = [make_record(i) for i in range(11_000, 22_000)]
        put_plain(kinesis, LOGS, plain)
        kinesis_records = put_aggregated(kinesis, LOGS, aggregated)
        assert kinesis_records < len(aggregated) / 50  # aggregation really packed them
        sent = plain + aggregated
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=120, proc=consumer)
        assert_exactly_once(lines, sent)

        # Both shards of the logs stream were read, and the counters agree with the lake.
        assert len(consumer.owned_shards()) == 4
        assert consumer.metric("consumer_records_out_total", stream=LOGS) == len(sent)
        assert consumer.metric("consumer_dead_letters_total") == 0
    finally:
        consumer.stop()

    # DuckDB reads the bucket as a Hive-partitioned dataset with the right counts.
    _mirror_bucket(s3, "md-raw-logs", tmp_path / "lake")
    rows = duckdb.sql(
        f"""
        SELECT service, year, month, day, hour, count(*) AS n, count(DISTINCT event_id) AS ids
        FROM read_json('{tmp_path}/lake/**/*.jsonl', hive_partitioning = true,
                       format = 'newline_delimited')
        GROUP BY ALL
        """
    ).fetchall()
    got = {
        (s, f"{int(y):04d}", f"{int(m):02d}", f"{int(d):02d}", f"{int(h):02d}"): (n, ids)
        for s, y, m, d, h, n, ids in rows
    }
    want = Counter(
        (
            r["service"],
            r["timestamp"][0:4],
            r["timestamp"][5:7],
            r["timestamp"][8:10],
            r["timestamp"][11:13],
        )
        for r in sent
    )
    assert {k: v[0] for k, v in got.items()} == dict(want)
    assert all(n == ids for n, ids in got.values())
    assert len(want) >= 5 * 4  # several services over several event hours


def test_gzip_objects_are_readable_and_smaller(
    endpoint: str, settings: Settings, proc_logs: Path
) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(endpoint, proc_logs, COMPRESSION="gzip")
    try:
        consumer.wait_healthy()
        sent = [make_record(i) for i in range(2_000)]
        put_aggregated(kinesis, LOGS, sent)
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=60, proc=consumer)
        assert_exactly_once(lines, sent)
        keys = {line.key for line in lines}
        assert all(key.endswith(".jsonl.gz") for key in keys)
        stored = sum(s3.head_object(Bucket="md-raw-logs", Key=key)["ContentLength"] for key in keys)
        raw = sum(len(str(r)) for r in sent)
        assert stored < raw / 3
        assert all(line.key.startswith(expected_prefix(line.record)) for line in lines)
    finally:
        consumer.stop()

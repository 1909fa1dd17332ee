"""Test helpers for the data path: make records, put them, start consumers, read the lake."""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aws_kinesis_agg.aggregator import RecordAggregator

from stages.common.lake import is_hidden, list_objects, read_lines
from tests.support.processes import (
    START_TIMEOUT_SECONDS,
    Process,
    base_env,
    free_port,
    wait_http_ok,
)

SERVICES = ("api-gateway", "payment-service", "auth-service", "account-service", "fraud-detection")
BASE_TIME = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def make_record(i: int, *, hours: int = 4, services: Sequence[str] = SERVICES) -> dict[str, Any]:
    """A canonical log record whose service and UTC hour vary with ``i``."""
    service = services[i % len(services)]
    moment = BASE_TIME + timedelta(hours=(i // len(services)) % hours, seconds=i % 3600)
    return {
        "event_id": str(uuid.uuid4()),
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "kind": "log",
        "service": service,
        "host": f"{service}-1",
        "level": "INFO",
        "message": f"request {i} processed",
        "log_type": "api_gateway_log",
        "category": "application",
        "is_anomaly": False,
        "attributes": {"http.status_code": 200, "duration_ms": i % 500},
    }


def expected_prefix(record: dict[str, Any]) -> str:
    ts = record["timestamp"]
    hour = f"year={ts[0:4]}/month={ts[5:7]}/day={ts[8:10]}/hour={ts[11:13]}"
    return f"service={record['service']}/{hour}/"


def put_plain(kinesis: Any, stream: str, records: Iterable[dict[str, Any]]) -> int:
    """One Kinesis record per user record, in PutRecords batches of 500; failures re-sent."""
    entries = [{"Data": orjson.dumps(r), "PartitionKey": r["service"]} for r in records]
    for start in range(0, len(entries), 500):
        _put_all(kinesis, stream, entries[start : start + 500])
    return len(entries)


def put_aggregated(
    kinesis: Any, stream: str, records: Iterable[dict[str, Any]], per_aggregate: int = 200
) -> int:
    """KPL aggregates of up to ``per_aggregate`` user records (one partition key per aggregate)."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_key.setdefault(record["service"], []).append(record)
    entries = []
    for key, group in by_key.items():
        for start in range(0, len(group), per_aggregate):
            agg = RecordAggregator()
            for record in group[start : start + per_aggregate]:
                agg.add_user_record(key, orjson.dumps(record))
            pk, _ehk, data = agg.clear_and_get().get_contents()
            entries.append({"Data": data, "PartitionKey": pk})
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        # Stay inside PutRecords' 500-entry / 5 MiB limits.
        if batch and (len(batch) == 500 or size + len(entry["Data"]) > 4_500_000):
            _put_all(kinesis, stream, batch)
            batch, size = [], 0
        batch.append(entry)
        size += len(entry["Data"])
    if batch:
        _put_all(kinesis, stream, batch)
    return len(entries)


def _put_all(kinesis: Any, stream: str, entries: list[dict[str, Any]]) -> None:
    pending = entries
    for _ in range(20):
        resp = kinesis.put_records(StreamName=stream, Records=pending)
        if resp["FailedRecordCount"] == 0:
            return
        pending = [e for e, r in zip(pending, resp["Records"], strict=True) if "ErrorCode" in r]
        time.sleep(0.05)
    raise RuntimeError(f"{len(pending)} records could not be put")


@dataclass
class LakeLine:
    bucket: str
    key: str
    record: dict[str, Any]


def read_bucket(s3: Any, bucket: str, prefix: str = "") -> list[LakeLine]:
    lines: list[LakeLine] = []
    for obj in list_objects(s3, bucket, prefix):
        body = read_lines(s3, bucket, obj["Key"]).require_complete()
        assert body.ends_with_newline, f"{obj['Key']} does not end with a newline"
        lines.extend(LakeLine(bucket, obj["Key"], orjson.loads(line)) for line in body.lines)
    return lines


def lake_records(s3: Any, bucket: str) -> list[LakeLine]:
    """Every line outside the dead-letter prefix."""
    return [line for line in read_bucket(s3, bucket) if not is_hidden(line.key)]


def count_objects(s3: Any, bucket: str) -> int:
    return sum(1 for _ in list_objects(s3, bucket))


def assert_exactly_once(lines: list[LakeLine], sent: list[dict[str, Any]]) -> None:
    """Every sent event_id exactly once, in the partition of its own service and UTC hour."""
    seen = Counter(line.record["event_id"] for line in lines)
    duplicates = {k: v for k, v in seen.items() if v > 1}
    sent_ids = {r["event_id"] for r in sent}
    missing = sent_ids - set(seen)
    unexpected = set(seen) - sent_ids
    assert not duplicates, f"{len(duplicates)} event_ids duplicated, e.g. {list(duplicates)[:3]}"
    assert not missing, f"{len(missing)} of {len(sent_ids)} event_ids missing from S3"
    assert not unexpected, f"{len(unexpected)} event_ids in S3 that were never sent"
    by_id = {r["event_id"]: r for r in sent}
    for line in lines:
        want = expected_prefix(by_id[line.record["event_id"]])
        assert line.key.startswith(want), f"{line.key} should be under {want}"


def wait_for_lines(
    s3: Any, bucket: str, expected: int, timeout: float, proc: Process | None = None
) -> list[LakeLine]:
    deadline = time.monotonic() + timeout
    lines: list[LakeLine] = []
    while time.monotonic() < deadline:
        lines = lake_records(s3, bucket)
        if len(lines) >= expected:
            return lines
        time.sleep(0.5)
    tail = proc.log_tail() if proc else ""
    raise AssertionError(f"only {len(lines)} of {expected} records in {bucket}\n{tail}")


class ConsumerProcess(Process):
    def __init__(self, endpoint: str, log_dir: Path, name: str = "consumer", **env: str) -> None:
        self.port = free_port()
        super().__init__(
            f"{name}-{self.port}",
            [sys.executable, "-m", "stages.consumer"],
            base_env(endpoint, CONSUMER_PORT=str(self.port), **env),
            log_dir,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        wait_http_ok(f"{self.url}/health", self, timeout)

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=5).json()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` matching ``labels`` in the Prometheus text."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                wanted = all(sample.labels.get(k) == v for k, v in labels.items())
                if sample.name == name and wanted:
                    total += sample.value
        return total

    def owned_shards(self) -> set[str]:
        return {f"{s['stream']}:{s['shard_id']}" for s in self.health()["owned_shards"]}

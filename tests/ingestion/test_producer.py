"""The Kinesis producer against the real emulator (and, for faults, through the fault proxy)."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import orjson
import pytest
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from botocore.exceptions import ClientError, EndpointConnectionError
from prometheus_client import REGISTRY

from stages.common import aws
from stages.common.config import Settings
from stages.common.kpl import encode_aggregated
from stages.ingestion.producer import (
    MAX_CALL_BYTES,
    MAX_CALL_RECORDS,
    MAX_RECORD_BYTES,
    BatchPutError,
    KinesisProducer,
    ProducerClosed,
    ProducerFull,
    PutFailed,
    PutResult,
    RecordTooLarge,
)
from tests.ingestion.helpers import StreamContents, read_stream
from tests.support.fault_proxy import FaultProxy

LOGS = "stage01-logs-stream"  # two shards by default
METRICS = "stage01-metrics-stream"
SERVICES = [
    "api-gateway",
    "auth-service",
    "payment-service",
    "user-service",
    "notification-service",
    "inventory-service",
    "search-service",
    "db-proxy",
]


def make_records(n: int, services: list[str] = SERVICES, pad: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "event_id": uuid.uuid4().hex,
            "timestamp": "2025-11-09T13:24:33.120Z",
            "kind": "log",
            "service": services[i % len(services)],
            "host": "host-1",
            "level": "INFO",
            "message": "Request processed" + "x" * pad,
            "anomaly_score": 5.2,
            "is_anomaly": False,
            "attributes": {"seq": i},
        }
        for i in range(n)
    ]


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(endpoint, seed=1234) as proxy:
        yield proxy


@pytest.fixture
def kinesis(settings: Settings) -> Any:
    """A client straight to the emulator, to read back what really got stored."""
    return aws.client("kinesis", settings)


def producer_for(url: str, stream: str = LOGS, **kwargs: Any) -> KinesisProducer:
    return KinesisProducer(stream, Settings(aws_endpoint_url=url), **kwargs)


def assert_exactly_once(stored: StreamContents, records: list[dict[str, Any]]) -> None:
    """Every record once, unchanged, on the shard its partition key hashes to."""
    by_id = {r["event_id"]: r for r in records}
    seen = Counter()
    for user_record in stored.records:
        record = orjson.loads(user_record.data)
        seen[record["event_id"]] += 1
        assert record == by_id[record["event_id"]]
        assert user_record.partition_key == record["service"]
        assert user_record.shard_id == stored.shard_for_key(record["service"]), record
    duplicates = {k: v for k, v in seen.items() if v > 1}
    assert not duplicates, f"{len(duplicates)} records stored more than once"
    missing = set(by_id) - set(seen)
    assert not missing, f"{len(missing)} of {len(by_id)} records missing"


# --- Happy path ----------------------------------------------------------------------------------
def test_aggregated_records_arrive_once_on_their_own_shard(endpoint: str, kinesis: Any) -> None:
    records = make_records(5000)
    with producer_for(endpoint) as producer:
        assert len(producer.shard_map()) == 2
        singles = [producer.put(r) for r in records[:200]]
        results = []
        for start in range(200, len(records), 600):
            results += producer.put_many(records[start : start + 600], timeout=30)
        single_results = [f.result(30) for f in singles]
        stats = producer.stats()

    stored = read_stream(kinesis, LOGS)
    # Precondition: the services really spread over both shards.
    assert {stored.shard_for_key(s) for s in SERVICES} == set(stored.shards)
    assert_exactly_once(stored, records)
    assert all(r.aggregated for r in stored.records)
    assert stored.kinesis_records < len(records) / 50
    assert stats.records_acknowledged == len(records)
    assert stats.aggregated_records_put == stats.kinesis_records_put == stored.kinesis_records
    # What put() reported is where the record really is.
    where = {
        orjson.loads(r.data)["event_id"]: (r.shard_id, r.sequence_number) for r in stored.records
    }
    for record, result in zip(records, single_results + results, strict=True):
        assert isinstance(result, PutResult)
        assert where[record["event_id"]] == tuple(result)


def test_plain_mode_puts_one_kinesis_record_per_user_record(endpoint: str, kinesis: Any) -> None:
    records = make_records(1500)
    with producer_for(endpoint, aggregate=False) as producer:
        producer.put_many(records, timeout=30)
        stats = producer.stats()
    stored = read_stream(kinesis, LOGS)
    assert_exactly_once(stored, records)
    assert stored.kinesis_records == len(records)
    assert not any(r.aggregated for r in stored.records)
    assert stats.aggregated_records_put == 0


def test_aggregates_are_byte_identical_to_the_library(endpoint: str) -> None:
    """The inlined encoder produces what aws-kinesis-agg's RecordAggregator produces."""
    sent: list[dict[str, Any]] = []

    class Recording:
        def __init__(self, client: Any) -> None:
            self.client = client

        def list_shards(self, **kwargs: Any) -> Any:
            return self.client.list_shards(**kwargs)

        def put_records(self, **kwargs: Any) -> Any:
            sent.extend(kwargs["Records"])
            return self.client.put_records(**kwargs)

    settings = Settings(aws_endpoint_url=endpoint)
    records = make_records(3000, services=["svc-a", "svc-b", "svc-c", *SERVICES])
    by_data = {orjson.dumps(r): r for r in records}
    client = Recording(aws.client("kinesis", settings))
    with KinesisProducer(LOGS, settings, client=client, aggregation_max_bytes=64 * 1024) as p:
        p.put_many(records, timeout=30)
    aggregated = [e for e in sent if "ExplicitHashKey" in e]
    assert len(aggregated) > 5
    for entry in aggregated:
        users = list(
            iter_deaggregate_records(
                {"Data": entry["Data"], "PartitionKey": entry["PartitionKey"],
                 "SequenceNumber": "1", "ApproximateArrivalTimestamp": 0},
                data_format="Boto3",
            )
        )  # fmt: skip
        library = RecordAggregator()
        for user in users:
            data = base64.b64decode(user["kinesis"]["data"])
            assert data in by_data
            assert library.add_user_record(user["kinesis"]["partitionKey"], data) is None
        pk, _, library_bytes = library.clear_and_get().get_contents()
        assert entry["Data"] == library_bytes
        assert entry["PartitionKey"] == pk
        assert len(entry["Data"]) + len(pk.encode()) <= 64 * 1024
        # The aggregate is put inside the shard of its first user record.
        first = int.from_bytes(hashlib.md5(pk.encode()).digest(), "big")
        assert int(entry["ExplicitHashKey"]) == first
    # The reference encoder agrees with the library too (two keys, records interleaved).
    library = RecordAggregator()
    for key, data in [("k1", b"a"), ("k2", b"bb"), ("k1", b"c" * 300)]:
        library.add_user_record(key, data)
    expected = library.clear_and_get().get_contents()[2]
    assert encode_aggregated(["k1", "k2"], [(0, b"a"), (1, b"bb"), (0, b"c" * 300)]) == expected


# --- Limits --------------------------------------------------------------------------------------
def test_calls_stay_within_500_entries_and_5_mib(proxy: FaultProxy, kinesis: Any) -> None:
    key = "api-gateway"
    big = [
        (key, b"B" * (MAX_RECORD_BYTES - len(key)) if i % 2 else b"b" * (MAX_RECORD_BYTES - 900))
        for i in range(12)
    ]
    small = make_records(1600)
    with producer_for(proxy.url, aggregate=False) as plain:
        plain.put_many(small, timeout=30)
    with producer_for(proxy.url, aggregate=True) as aggregated:
        aggregated.put_many(big + make_records(3000), timeout=60)

    calls = list(proxy.putrecords_calls)
    assert calls
    assert max(c.entries for c in calls) == MAX_CALL_RECORDS  # packed up to the limit...
    assert all(c.entries <= MAX_CALL_RECORDS for c in calls)  # ...and never past it
    assert max(c.payload_bytes for c in calls) > 4 * 1024 * 1024
    assert all(c.payload_bytes <= MAX_CALL_BYTES for c in calls)
    assert all(c.max_entry_bytes <= MAX_RECORD_BYTES for c in calls)
    stored = read_stream(kinesis, LOGS)
    assert sum(1 for r in stored.records if len(r.data) > 1_000_000) == 12


def test_oversize_records_are_rejected_with_a_clear_error(endpoint: str) -> None:
    key = "api-gateway"
    with producer_for(endpoint) as producer:
        exact = producer.put(b"x" * (MAX_RECORD_BYTES - len(key)), partition_key=key)
        with pytest.raises(RecordTooLarge) as exc:
            producer.put(b"x" * (MAX_RECORD_BYTES - len(key) + 1), partition_key=key)
        assert exc.value.size == MAX_RECORD_BYTES + 1
        assert str(MAX_RECORD_BYTES + 1) in str(exc.value)
        assert str(MAX_RECORD_BYTES) in str(exc.value)

        batch = [*make_records(3), {"service": key, "blob": "y" * MAX_RECORD_BYTES}]
        with pytest.raises(RecordTooLarge, match="record #3"):
            producer.put_many(batch)
        with pytest.raises(ValueError, match="partition key"):
            producer.put({"no": "service"})
        assert exact.result(30).shard_id.startswith("shardId-")
        stats = producer.stats()
    assert stats.rejected_oversize == 2
    assert stats.records_put == 1  # nothing of the rejected batch was queued


# --- Faults --------------------------------------------------------------------------------------
@pytest.mark.parametrize("aggregate", [True, False], ids=["aggregated", "plain"])
def test_partial_failures_and_throttling_lose_and_duplicate_nothing(
    proxy: FaultProxy, kinesis: Any, aggregate: bool
) -> None:
    proxy.configure(putrecords_partial=0.25, putrecords_throttle=0.25)
    # A run may need only a few calls; force some of each fault so both paths always run.
    proxy.inject_next("putrecords_throttle", 2)
    proxy.inject_next("putrecords_partial", 1)
    records = make_records(3000 if aggregate else 1500)
    with producer_for(
        proxy.url,
        aggregate=aggregate,
        linger_ms=5,
        aggregation_max_bytes=4096,  # many entries per call, so entries can fail separately
        base_backoff_seconds=0.005,
        max_backoff_seconds=0.05,
        max_retries=40,
    ) as producer:
        batches = [producer.submit_many(records[i : i + 100]) for i in range(0, len(records), 100)]
        for batch in batches:
            batch.result(60)
        stats = producer.stats()

    assert proxy.injected["putrecords_throttle"] > 0
    assert proxy.injected["putrecords_partial_entries"] > 0
    assert stats.throttled_calls == proxy.injected["putrecords_throttle"]
    assert stats.throttled_entries == proxy.injected["putrecords_partial_entries"]
    assert stats.retried_entries >= stats.throttled_entries
    assert stats.records_failed == 0
    assert_exactly_once(read_stream(kinesis, LOGS), records)


def test_backpressure_then_recovery(proxy: FaultProxy, kinesis: Any) -> None:
    proxy.configure(putrecords_throttle=1.0)
    limit = 256 * 1024
    producer = producer_for(
        proxy.url,
        max_in_flight_bytes=limit,
        put_timeout=0.3,
        linger_ms=0,
        base_backoff_seconds=0.01,
        max_backoff_seconds=0.1,
        max_retries=1000,
    )
    try:
        records = make_records(200, pad=4000)
        accepted: list[tuple[dict[str, Any], Future[PutResult]]] = []
        started = time.monotonic()
        with pytest.raises(ProducerFull) as exc:
            for record in records:
                accepted.append((record, producer.put(record)))
        waited = time.monotonic() - started
        assert "full" in str(exc.value) and str(limit) in str(exc.value)
        assert exc.value.retry_after > 0
        assert waited >= 0.3
        assert 0 < len(accepted) < len(records)
        stats = producer.stats()
        assert stats.in_flight_bytes <= limit
        assert stats.backpressure_rejections == 1
        assert not any(f.done() for _, f in accepted)
        assert proxy.injected["putrecords_throttle"] > 0

        proxy.clear()
        assert producer.flush(timeout=20)
        assert all(f.result(0).shard_id for _, f in accepted)
    finally:
        producer.close(timeout=10)
    assert_exactly_once(read_stream(kinesis, LOGS), [r for r, _ in accepted])


@pytest.mark.parametrize("fault", ["putrecords_throttle", "putrecords_partial"])
def test_exhausted_retries_fail_the_records(proxy: FaultProxy, kinesis: Any, fault: str) -> None:
    proxy.configure(**{fault: 1.0})
    records = make_records(300)
    with producer_for(
        proxy.url, max_retries=2, base_backoff_seconds=0.01, max_backoff_seconds=0.02
    ) as producer:
        single = producer.put(records[0])
        with pytest.raises(BatchPutError) as exc:
            producer.put_many(records[1:], timeout=30)
        with pytest.raises(PutFailed) as failed:
            single.result(30)
        # A future is resolved before its records are counted; flush() returns once every
        # record is settled, so the counts are complete.
        assert producer.flush(30)
        stats = producer.stats()

    assert failed.value.error_code == "ProvisionedThroughputExceededException"
    assert failed.value.attempts == 3
    assert "after 3 attempts" in str(failed.value)
    assert set(exc.value.errors) == set(range(len(records) - 1))
    assert all(isinstance(e, PutFailed) for e in exc.value.errors.values())
    assert exc.value.pending == []
    assert stats.records_failed == len(records)
    assert stats.records_acknowledged == 0
    assert stats.in_flight_bytes == 0
    assert read_stream(kinesis, LOGS).records == []


# --- Lifecycle, metrics, resharding --------------------------------------------------------------
def test_close_sends_what_is_buffered_and_then_refuses(endpoint: str, kinesis: Any) -> None:
    records = make_records(50)
    producer = producer_for(endpoint, linger_ms=60_000)
    futures = [producer.put(r) for r in records]
    time.sleep(0.2)
    assert not any(f.done() for f in futures)  # lingering
    started = time.monotonic()
    producer.close()
    assert time.monotonic() - started < 10
    assert all(f.result(0) for f in futures)
    with pytest.raises(ProducerClosed):
        producer.put(records[0])
    assert_exactly_once(read_stream(kinesis, LOGS), records)


def test_prometheus_metrics_per_stream(endpoint: str) -> None:
    def sample(name: str, stream: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"stream": stream, **labels}) or 0.0

    before_logs = sample("kinesis_producer_records_total", LOGS)
    before_metrics = sample("kinesis_producer_records_total", METRICS)
    before_calls = sample("kinesis_producer_put_records_calls_total", LOGS, outcome="ok")
    # Two producers (and a second one on the same stream) in one process do not collide.
    with producer_for(endpoint, LOGS) as a, producer_for(endpoint, METRICS) as b:
        with producer_for(endpoint, LOGS) as c:
            c.put_many(make_records(5))
        a.put_many(make_records(10))
        b.put_many(make_records(3))
    assert sample("kinesis_producer_records_total", LOGS) - before_logs == 15
    assert sample("kinesis_producer_records_total", METRICS) - before_metrics == 3
    assert sample("kinesis_producer_put_records_calls_total", LOGS, outcome="ok") > before_calls
    assert sample("kinesis_producer_in_flight_bytes", LOGS) == 0
    assert sample("kinesis_producer_records_acknowledged_total", METRICS) >= 3


class FakeKinesis:
    """A tiny Kinesis that really routes by hash key and can split shards (moto's split keeps
    writing to the closed parent, so resharding cannot be exercised against it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.shards: dict[str, dict[str, Any]] = {
            "shardId-0": {"range": (0, 2**128 - 1), "open": True}
        }
        self.stored: list[tuple[str, dict[str, Any]]] = []
        self.list_calls = 0
        self.raise_next: list[Exception] = []  # whole-call errors for the next calls
        self.calls = 0

    def split(self, shard_id: str, at: int) -> None:
        with self.lock:
            start, end = self.shards[shard_id]["range"]
            self.shards[shard_id]["open"] = False
            n = len(self.shards)
            self.shards[f"shardId-{n}"] = {"range": (start, at - 1), "open": True}
            self.shards[f"shardId-{n + 1}"] = {"range": (at, end), "open": True}

    def list_shards(self, **_: Any) -> dict[str, Any]:
        with self.lock:
            self.list_calls += 1
            return {
                "Shards": [
                    {
                        "ShardId": sid,
                        "HashKeyRange": {
                            "StartingHashKey": str(s["range"][0]),
                            "EndingHashKey": str(s["range"][1]),
                        },
                        "SequenceNumberRange": {"StartingSequenceNumber": "0"}
                        | ({} if s["open"] else {"EndingSequenceNumber": "9"}),
                    }
                    for sid, s in self.shards.items()
                ]
            }

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        out = []
        with self.lock:
            self.calls += 1
            if self.raise_next:
                raise self.raise_next.pop(0)
            for entry in Records:
                key = entry.get("ExplicitHashKey")
                value = (
                    int(key)
                    if key
                    else int.from_bytes(hashlib.md5(entry["PartitionKey"].encode()).digest(), "big")
                )
                sid = next(
                    sid
                    for sid, s in self.shards.items()
                    if s["open"] and s["range"][0] <= value <= s["range"][1]
                )
                self.stored.append((sid, entry))
                out.append({"ShardId": sid, "SequenceNumber": str(len(self.stored))})
        return {"FailedRecordCount": 0, "Records": out}

    def shard_of_key(self, partition_key: str) -> str:
        value = int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")
        return next(
            sid
            for sid, s in self.shards.items()
            if s["open"] and s["range"][0] <= value <= s["range"][1]
        )


def test_shard_map_follows_a_reshard() -> None:
    fake = FakeKinesis()
    settings = Settings(aws_endpoint_url="http://127.0.0.1:9")
    with KinesisProducer("s", settings, client=fake, linger_ms=1) as producer:
        producer.put_many(make_records(500), timeout=10)
        assert [s[0] for s in producer.shard_map()] == ["shardId-0"]
        fake.split("shardId-0", 2**127)
        # The first call after the split lands where the stale map did not predict...
        producer.put_many(make_records(500), timeout=10)
        deadline = time.monotonic() + 5
        while len(producer.shard_map()) != 2 and time.monotonic() < deadline:
            producer.put_many(make_records(20), timeout=10)
        # ...which makes the producer re-read the map and route to the children from then on.
        assert sorted(s[0] for s in producer.shard_map()) == ["shardId-1", "shardId-2"]
        fake.stored.clear()
        records = make_records(2000)
        producer.put_many(records, timeout=10)
    assert {sid for sid, _ in fake.stored} == {"shardId-1", "shardId-2"}
    for sid, entry in fake.stored:
        users = iter_deaggregate_records(
            {"Data": entry["Data"], "PartitionKey": entry["PartitionKey"],
             "SequenceNumber": "1", "ApproximateArrivalTimestamp": 0},
            data_format="Boto3",
        )  # fmt: skip
        for user in users:
            assert fake.shard_of_key(user["kinesis"]["partitionKey"]) == sid


def test_put_batch_callbacks_and_pending(endpoint: str) -> None:
    with producer_for(endpoint, linger_ms=0) as producer:
        batch = producer.submit_many(make_records(20))
        called = threading.Event()
        batch.add_done_callback(lambda b: called.set())
        assert batch.wait(30)
        assert called.wait(5)
        assert batch.pending() == [] and not batch.errors
        assert len(batch.result(0)) == 20


def _client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutRecords",
    )


def test_whole_call_errors_resend_the_whole_call() -> None:
    fake = FakeKinesis()
    fake.raise_next = [
        _client_error(500, "InternalFailure"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        _client_error(503, "ServiceUnavailable"),
    ]
    settings = Settings(aws_endpoint_url="http://127.0.0.1:9")
    records = make_records(300)
    with KinesisProducer(
        "s", settings, client=fake, base_backoff_seconds=0.001, max_backoff_seconds=0.01
    ) as producer:
        results = producer.put_many(records, timeout=10)
        stats = producer.stats()
    assert len(results) == len(records)
    assert stats.put_records_call_errors == 3
    assert stats.retried_entries > 0
    assert fake.calls == 4  # three failures, then the same entries once more
    stored = [
        orjson.loads(base64.b64decode(u["kinesis"]["data"]))["event_id"]
        for _, entry in fake.stored
        for u in iter_deaggregate_records(
            {"Data": entry["Data"], "PartitionKey": entry["PartitionKey"],
             "SequenceNumber": "1", "ApproximateArrivalTimestamp": 0},
            data_format="Boto3",
        )
    ]  # fmt: skip
    assert sorted(stored) == sorted(r["event_id"] for r in records)


def test_non_retryable_errors_fail_at_once() -> None:
    fake = FakeKinesis()
    fake.raise_next = [_client_error(400, "AccessDeniedException")]
    settings = Settings(aws_endpoint_url="http://127.0.0.1:9")
    with KinesisProducer("s", settings, client=fake, max_retries=10) as producer:
        future = producer.put(make_records(1)[0])
        with pytest.raises(PutFailed, match="AccessDeniedException") as exc:
            future.result(10)
    assert exc.value.attempts == 1
    assert fake.calls == 1

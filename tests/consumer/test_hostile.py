"""Hostile records put straight into Kinesis (a producer that bypasses ingestion).

Each case runs against a real emulator and a real consumer process. Every hostile record must end
either in the lake under a valid partition or in the dead letter with its reason; a normal record
put behind it on the same shard (same partition key) must still arrive; the counters must agree.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aws_kinesis_agg
import httpx
import orjson
from aws_kinesis_agg.aggregator import RecordAggregator

from stages.common import aws
from stages.common.config import Settings
from stages.consumer.leases import DynamoLeaseStore, lease_key
from tests.support.lake import ConsumerProcess, LakeLine, read_bucket

LOGS = "stage01-logs-stream"
BUCKET = "md-raw-logs"
KEY = "hostile"  # one partition key: every record of a test is on the same shard, in order
SENTINEL_HOUR = "year=2026/month=11/day=27/hour=06"
_LAKE_KEY = re.compile(
    r"service=(?P<service>[A-Za-z0-9._-]{1,128})/year=(?P<y>\d{4})/month=(?P<m>\d{2})"
    r"/day=(?P<d>\d{2})/hour=(?P<h>\d{2})/part-[^/]+\.jsonl"
)
_DEAD_KEY = re.compile(
    rf"_dead-letter/stream={LOGS}/year=\d{{4}}/month=\d{{2}}/day=\d{{2}}/hour=\d{{2}}/part-[^/]+"
)
ARRIVAL = "arrival"  # expected hour: the Kinesis arrival hour (the record's timestamp is unusable)


@dataclass
class Case:
    name: str
    data: bytes
    # In the lake: the expected service partition and hour (or ARRIVAL); else dead: the reason.
    service: str | None = None
    hour: str | None = None
    reason: str | None = None
    # Several user records in one aggregate: (sub-record data, expectation) per sub-record.
    parts: tuple[Case, ...] = ()


def _lake(name: str, record: dict[str, Any], service: str, hour: str) -> Case:
    record = {"event_id": f"hostile-{name}", **record}
    return Case(name, orjson.dumps(record), service=service, hour=hour)


def _dead(name: str, data: bytes, reason: str) -> Case:
    return Case(name, data, reason=reason)


def _ts(name: str, timestamp: Any, hour: str) -> Case:
    return _lake(name, {"service": "ts", "timestamp": timestamp}, "ts", hour)


def _aggregate(*records: bytes) -> bytes:
    agg = RecordAggregator()
    for data in records:
        agg.add_user_record(KEY, data)
    _pk, _ehk, data = agg.clear_and_get().get_contents()
    return data


def _with_md5(body: bytes) -> bytes:
    return aws_kinesis_agg.MAGIC + body + hashlib.md5(body).digest()


def _put_cases(kinesis: Any, cases: list[Case]) -> tuple[list[dict[str, Any]], str]:
    """Each case, then a normal record behind it, on one shard; returns the sentinels and shard."""
    sentinels = []
    shard = ""
    for i, case in enumerate(cases):
        shard = kinesis.put_record(StreamName=LOGS, Data=case.data, PartitionKey=KEY)["ShardId"]
        sentinel = {
            "event_id": f"sentinel-{i}-{case.name}",
            "timestamp": "2026-11-27T06:00:00.000Z",
            "service": "sentinel",
            "kind": "log",
            "message": f"behind {case.name}",
        }
        kinesis.put_record(StreamName=LOGS, Data=orjson.dumps(sentinel), PartitionKey=KEY)
        sentinels.append(sentinel)
    return sentinels, shard


def _hours_between(start: datetime, end: datetime) -> set[str]:
    hours = set()
    moment = start.replace(minute=0, second=0, microsecond=0)
    while moment <= end:
        hours.add(f"year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour={moment:%H}")
        moment += timedelta(hours=1)
    return hours


def _expected_counts(cases: list[Case]) -> tuple[int, int]:
    """(records for the lake, dead letters) over every user record of the cases."""
    lake = dead = 0
    for case in cases:
        for part in case.parts or (case,):
            if part.reason is None:
                lake += 1
            else:
                dead += 1
    return lake, dead


def _run_cases(settings: Settings, proc_logs: Path, cases: list[Case]) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(settings.aws_endpoint_url or "", proc_logs)
    try:
        consumer.wait_healthy()
        started = datetime.now(UTC)
        sentinels, shard = _put_cases(kinesis, cases)
        want_lake, want_dead = _expected_counts(cases)
        want_lake += len(sentinels)

        deadline = time.monotonic() + 60
        lines: list[LakeLine] = []
        while time.monotonic() < deadline:
            lines = read_bucket(s3, BUCKET)
            if len(lines) >= want_lake + want_dead:
                break
            time.sleep(0.5)
        arrival_hours = _hours_between(started - timedelta(minutes=1), datetime.now(UTC))
        lake = [line for line in lines if not line.key.startswith("_")]
        dead = [line for line in lines if line.key.startswith("_")]
        arrived = {line.record.get("event_id") for line in lake}
        missing = [s["event_id"] for s in sentinels if s["event_id"] not in arrived]
        assert not missing, f"records behind a hostile one never arrived: {missing}\n" + (
            consumer.log_tail()
        )

        for line in lake:
            match = _LAKE_KEY.fullmatch(line.key)
            assert match, f"invalid lake key {line.key}"
            datetime(int(match["y"]), int(match["m"]), int(match["d"]), int(match["h"]))
        for line in dead:
            assert _DEAD_KEY.fullmatch(line.key), f"invalid dead-letter key {line.key}"
            assert line.record["reason"]
        by_id = {line.record.get("event_id"): line for line in lake}
        by_data = {base64.b64decode(line.record["data_base64"]): line for line in dead}
        for case in cases:
            for part in case.parts or (case,):
                if part.reason is not None:
                    line = by_data.get(part.data)
                    assert line is not None, f"{part.name}: not in the dead letter"
                    assert part.reason in line.record["reason"], (part.name, line.record["reason"])
                    assert line.record["partition_key"] == KEY
                    continue
                line = by_id.get(f"hostile-{part.name}")
                assert line is not None, f"{part.name}: not in the lake"
                service, hour = line.key.split("/", 1)
                assert service == f"service={part.service}", (part.name, line.key)
                hours = arrival_hours if part.hour == ARRIVAL else {part.hour}
                assert hour.rsplit("/", 1)[0] in hours, (part.name, line.key, hours)
                assert line.record == orjson.loads(part.data), part.name
        assert len(lake) == want_lake and len(dead) == want_dead, (len(lake), len(dead))
        want_fallbacks = sum(
            1 for case in cases for part in case.parts or (case,) if part.hour == ARRIVAL
        )

        # The counters say the same once the flushes have been counted.
        def counters() -> dict[str, float]:
            return {
                "out": consumer.metric("consumer_records_out_total", stream=LOGS),
                "dead": consumer.metric("consumer_dead_letters_total", stream=LOGS),
                "fallbacks": consumer.metric("consumer_event_time_fallbacks_total", stream=LOGS),
                "restarts": consumer.metric("consumer_worker_restarts_total"),
                "errors": consumer.metric("consumer_record_errors_total"),
            }

        want = {
            "out": want_lake,
            "dead": want_dead,
            "fallbacks": want_fallbacks,
            "restarts": 0,
            "errors": 0,
        }
        deadline = time.monotonic() + 10
        while counters() != want and time.monotonic() < deadline:
            time.sleep(0.2)
        assert counters() == want
        resp = httpx.get(f"{consumer.url}/health", timeout=5)
        assert resp.status_code == 200, resp.text
        health = resp.json()
        assert health["dead_letters"] == want_dead
        assert health["worker_restarts"] == 0
        assert any(s["shard_id"] == shard for s in health["owned_shards"])
        assert consumer.alive()
    finally:
        consumer.stop()


def test_invalid_and_extreme_timestamps(settings: Settings, proc_logs: Path) -> None:
    cases = [
        # An offset moves these out of years 1-9999 (datetime raises OverflowError).
        _ts("year-1-offset", "0001-01-01T00:00:00+01:00", ARRIVAL),
        _ts("year-9999-offset", "9999-12-31T23:30:00-05:00", ARRIVAL),
        _ts("month-13-hour-25", "2025-13-01T25:00:00Z", ARRIVAL),
        _ts("hour-24", "2025-11-09T24:00:00Z", ARRIVAL),
        _ts("february-30", "2025-02-30T10:00:00Z", ARRIVAL),
        _ts("february-29-common-year", "2023-02-29T10:00:00Z", ARRIVAL),
        _ts("year-0", "0000-06-01T10:00:00Z", ARRIVAL),
        _ts("offset-24h", "2025-11-09T10:00:00+24:00", ARRIVAL),
        _ts("leap-second", "2016-12-31T23:59:60Z", "year=2016/month=12/day=31/hour=23"),
        _ts("leap-second-offset", "2016-12-31T23:59:60+01:00", "year=2016/month=12/day=31/hour=22"),
        _ts("february-29-leap-year", "2024-02-29T10:00:00Z", "year=2024/month=02/day=29/hour=10"),
        _ts("year-1", "0001-01-01T05:00:00+00:00", "year=0001/month=01/day=01/hour=05"),
        _ts("year-9999", "9999-12-31T23:59:59.999999999Z", "year=9999/month=12/day=31/hour=23"),
        _ts("epoch-seconds", 12_345, "year=1970/month=01/day=01/hour=03"),
        _ts("huge-float", 1e300, ARRIVAL),
        _ts("huge-negative", -1e300, ARRIVAL),
        _ts("u64-max", 18_446_744_073_709_551_615, ARRIVAL),
        _ts("empty", "", ARRIVAL),
        _ts("null", None, ARRIVAL),
        _ts("boolean", True, ARRIVAL),
        _ts("list", ["2025-11-09T10:00:00Z"], ARRIVAL),
        _ts("object", {"iso": "2025-11-09T10:00:00Z"}, ARRIVAL),
        _ts("words", "yesterday at noon", ARRIVAL),
        _ts("arabic-digits", "\u0662\u0660\u0662\u0665-11-09T10:00:00Z", ARRIVAL),
        _ts("trailing-newline", "2025-11-09T10:00:00Z\n", ARRIVAL),
        _ts("long", "2025-11-09T10:00:00Z" * 1000, ARRIVAL),
        _lake("missing", {"service": "ts"}, "ts", ARRIVAL),
    ]
    _run_cases(settings, proc_logs, cases)


def test_json_shapes_bytes_and_sizes(settings: Settings, proc_logs: Path) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    cases = [
        _dead("array", b'[{"service": "s"}]', "not a JSON object but a list"),
        _dead("string", b'"service"', "not a JSON object but a str"),
        _dead("number", b"42", "not a JSON object but a int"),
        _dead("true", b"true", "not a JSON object but a bool"),
        _dead("null", b"null", "not a JSON object but a NoneType"),
        _dead("no-service", b'{"timestamp": "2025-11-09T10:00:00Z"}', "'service'"),
        _dead("invalid-utf8", b'{"service": "s\xff\xfe", "m": "\xc3\x28"}', "not valid JSON"),
        _dead("raw-nul-in-string", b'{"service": "a\x00b"}', "not valid JSON"),
        _dead("only-nuls", b"\x00" * 64, "not valid JSON"),
        _dead("lone-surrogate", b'{"service": "s", "m": "\\ud800"}', "not valid JSON"),
        _dead("bom", b'\xef\xbb\xbf{"service": "s"}', "not valid JSON"),
        _dead("deep-array", nested, "not valid JSON"),
        _dead("deep-in-object", b'{"service": "s", "x": ' + nested + b"}", "not valid JSON"),
        _dead("truncated", b'{"service": "s", "message": "ab', "not valid JSON"),
        _dead("one-space", b" ", "not valid JSON"),
        _dead("empty-data", b"", "not valid JSON"),
        _lake("escaped-nul", {"service": "s", "message": "a\x00b\x01"}, "s", ARRIVAL),
        _lake("huge", {"service": "big", "message": "x" * 1_000_000}, "big", ARRIVAL),
        _lake("line-separators", {"service": "s", "message": "a\u2028b\nc\rd"}, "s", ARRIVAL),
        _lake("deep-but-allowed", {"service": "s", "x": [[[[[[[[[[1]]]]]]]]]]}, "s", ARRIVAL),
    ]
    # Pretty-printed JSON is one record; the lake gets it as one line.
    pretty = Case(
        "pretty",
        b'{\n  "event_id": "hostile-pretty",\n  "service": "s"\n}\n',
        service="s",
        hour=ARRIVAL,
    )
    _run_cases(settings, proc_logs, [*cases, pretty])


def test_path_like_and_odd_service_names(settings: Settings, proc_logs: Path) -> None:
    def svc(name: str, service: Any, partition: str) -> Case:
        return _lake(name, {"service": service}, partition, ARRIVAL)

    cases = [
        svc("dotdot-slash", "../x", ".._x"),
        svc("slash", "a/b", "a_b"),
        svc("equals", "=", "_"),
        svc("colon", ":", "_"),
        svc("dotdot", "..", ".."),
        svc("absolute", "/etc/passwd", "_etc_passwd"),
        svc("backslash", "..\\..\\x", ".._.._x"),
        svc("hive-injection", "x/year=1999/month=01", "x_year_1999_month_01"),
        svc("unicode", "плате́ж", "_" * 7),
        svc("emoji", "💳", "_"),
        svc("spaces-inside", " a b ", "a_b"),
        svc("escaped-nul", "a\x00b", "a_b"),
        svc("very-long", "s" * 5_000, "s" * 128),
        _dead("empty", orjson.dumps({"service": ""}), "'service'"),
        _dead("blank", orjson.dumps({"service": " \t\u2003"}), "'service'"),
        _dead("number", orjson.dumps({"service": 7}), "'service'"),
        _dead("list", orjson.dumps({"service": ["a"]}), "'service'"),
        _dead("null", orjson.dumps({"service": None}), "'service'"),
    ]
    _run_cases(settings, proc_logs, cases)


def test_aggregates_with_corrupt_sub_records_checksums_and_protobuf(
    settings: Settings, proc_logs: Path
) -> None:
    good = orjson.dumps({"event_id": "hostile-agg-good", "service": "agg", "timestamp": 12_345})
    overflow = orjson.dumps(
        {
            "event_id": "hostile-agg-overflow",
            "service": "agg",
            "timestamp": "9999-12-31T23:30:00-05:00",
        }
    )
    broken = b'{"service": "agg", "event_id": "trunc'
    array = b"[1, 2, 3]"
    mixed = Case(
        "mixed",
        _aggregate(good, broken, overflow, array),
        parts=(
            Case("agg-good", good, service="agg", hour="year=1970/month=01/day=01/hour=03"),
            _dead("agg-broken", broken, "not valid JSON"),
            Case("agg-overflow", overflow, service="agg", hour=ARRIVAL),
            _dead("agg-array", array, "not a JSON object"),
        ),
    )
    valid = _aggregate(orjson.dumps({"service": "agg", "m": "x" * 50}))
    body = valid[len(aws_kinesis_agg.MAGIC) : -16]
    cases = [
        mixed,
        _dead("bad-checksum", valid[:-1] + bytes([valid[-1] ^ 1]), "MD5 checksum mismatch"),
        _dead("truncated-protobuf", _with_md5(body[:-7]), "protobuf does not parse"),
        _dead("garbage-protobuf", _with_md5(b"\xff" * 40), "protobuf does not parse"),
        _dead("no-records", _with_md5(b"\x0a\x01k"), "no user records"),
        _dead("magic-only", aws_kinesis_agg.MAGIC, "too short"),
        _dead("magic-and-digest", _with_md5(b""), "too short"),
    ]
    _run_cases(settings, proc_logs, cases)


def _wait_health(
    consumer: ConsumerProcess, status: int, timeout: float, reason: str = ""
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert consumer.alive(), consumer.log_tail()
        try:
            resp = httpx.get(f"{consumer.url}/health", timeout=5)
        except httpx.HTTPError:  # not listening yet
            time.sleep(0.2)
            continue
        body = resp.json()
        if resp.status_code == status and reason in body.get("reason", ""):
            return body
        time.sleep(0.2)
    raise AssertionError(
        f"/health never answered {status} {reason!r}: {body}\n{consumer.log_tail()}"
    )


def test_a_worker_that_keeps_dying_makes_health_unhealthy_with_the_reason(
    settings: Settings, proc_logs: Path
) -> None:
    """A corrupt lease row (a pending range that is no sequence number) kills the shard's
    worker each time it reads a record; /health must name the shard and the error."""
    kinesis = aws.client("kinesis", settings)
    dynamodb = aws.client("dynamodb", settings)
    store = DynamoLeaseStore(dynamodb, settings.lease_table)
    shard = kinesis.put_record(StreamName=LOGS, Data=b'{"service": "s"}', PartitionKey=KEY)[
        "ShardId"
    ]
    store.create_if_missing(LOGS, shard, ())
    dynamodb.update_item(
        TableName=settings.lease_table,
        Key={"lease_key": {"S": lease_key(LOGS, shard)}},
        UpdateExpression="SET pending_end = :bad",
        ExpressionAttributeValues={":bad": {"S": "not-a-sequence-number"}},
    )
    consumer = ConsumerProcess(settings.aws_endpoint_url or "", proc_logs, CONSUMER_STREAMS="logs")
    try:
        health = _wait_health(consumer, 503, timeout=30, reason="died")
        reason = health["reason"]
        assert f"stream {LOGS} shard {shard}" in reason, reason
        assert "ValueError" in reason and "died" in reason, reason
        assert health["worker_restarts"] >= 3
        assert consumer.metric("consumer_worker_restarts_total", stream=LOGS, shard=shard) >= 3
        assert consumer.alive()
    finally:
        consumer.stop()


def test_a_shard_that_cannot_write_makes_health_unhealthy_until_it_can(
    settings: Settings, proc_logs: Path
) -> None:
    """The bucket is gone: the worker retries PutObject and its checkpoint stands still."""
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    consumer = ConsumerProcess(
        settings.aws_endpoint_url or "",
        proc_logs,
        CONSUMER_STREAMS="logs",
        CONSUMER_STALL_SECONDS="3",
        CONSUMER_MAX_BACKOFF_SECONDS="0.3",
    )
    try:
        consumer.wait_healthy()
        s3.delete_bucket(Bucket=BUCKET)
        record = {"event_id": "stalled-1", "service": "s", "timestamp": "2026-11-27T06:00:00Z"}
        shard = kinesis.put_record(StreamName=LOGS, Data=orjson.dumps(record), PartitionKey=KEY)[
            "ShardId"
        ]
        health = _wait_health(consumer, 503, timeout=30, reason="no progress")
        assert f"stream {LOGS} shard {shard} has made no progress" in health["reason"], health
        assert consumer.metric("consumer_retries_total", operation="PutObject") > 0

        s3.create_bucket(Bucket=BUCKET)
        _wait_health(consumer, 200, timeout=30)
        lines = read_bucket(s3, BUCKET)
        assert [line.record for line in lines] == [record]
        assert lines[0].key.startswith(f"service=s/{SENTINEL_HOUR}/")
    finally:
        consumer.stop()

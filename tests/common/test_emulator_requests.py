"""The emulator's request handling: kept-alive connections, JSON bodies read once, JSON answers.

These run against a real emulator process; what they check is what a client sees.
"""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlparse

import pytest

from stages.common import aws, resources
from stages.common.config import Settings
from stages.emulator import moto_core


def _kinesis_call(conn: http.client.HTTPConnection, action: str, body: dict) -> tuple[int, str]:
    conn.request(
        "POST",
        "/",
        body=json.dumps(body),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Kinesis_20131202.{action}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/"
            "aws4_request, SignedHeaders=host, Signature=x",
        },
    )
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp.getheader("Connection") or ""


def test_many_clients_keep_their_connections_alive(endpoint: str, settings: Settings) -> None:
    """Forty clients connected at once (the fleet's producer, consumer shards, ETL readers and
    dashboard together have more than ten) are all answered without ``Connection: close``."""
    stream = resources.streams(settings)[0].name
    url = urlparse(endpoint)
    conns = [http.client.HTTPConnection(url.hostname, url.port, timeout=10) for _ in range(40)]
    try:
        closing = []
        for _ in range(2):  # the second round runs on the connections the first one opened
            for index, conn in enumerate(conns):
                status, connection = _kinesis_call(
                    conn, "DescribeStreamSummary", {"StreamName": stream}
                )
                assert status == 200
                if connection.lower() == "close":
                    closing.append(index)
        assert closing == []
    finally:
        for conn in conns:
            conn.close()


def test_put_records_and_get_records_round_trip_every_byte(settings: Settings) -> None:
    kinesis = aws.client("kinesis", settings)
    stream = resources.streams(settings)[0].name
    payloads = [bytes(range(256)) * 40, "grüße, 東京 \u2028".encode(), b"", b"{}"]
    payloads = [p for p in payloads if p]  # Kinesis refuses empty data
    resp = kinesis.put_records(
        StreamName=stream,
        Records=[{"Data": data, "PartitionKey": "kåy"} for data in payloads],
    )
    assert resp["FailedRecordCount"] == 0
    shard = resp["Records"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    got = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert [r["Data"] for r in got] == payloads
    assert {r["PartitionKey"] for r in got} == {"kåy"}


def test_non_ascii_dynamodb_items_keep_their_crc_and_text(settings: Settings) -> None:
    """JSON answers carry UTF-8 text; DynamoDB's CRC32 header (which botocore checks) matches."""
    dynamodb = aws.client("dynamodb", settings)
    dynamodb.create_table(
        TableName="requests-test",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    text = "ünïcödé ✓ 東京 \U0001f600"
    dynamodb.put_item(TableName="requests-test", Item={"k": {"S": "1"}, "v": {"S": text}})
    item = dynamodb.get_item(TableName="requests-test", Key={"k": {"S": "1"}})["Item"]
    assert item["v"]["S"] == text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"StreamName": "a", "Limit": 5}', "a"),
        # orjson refuses these; json reads them, and so does the emulator.
        ('{"StreamName": "b", "Limit": NaN}', "b"),
        ('{"StreamName": "c", "Limit": 123456789012345678901234567890}', "c"),
        ('["StreamName"]', None),
        ("not json", None),
    ],
)
def test_a_json_body_is_read_like_moto_reads_it(body: str, expected: str | None) -> None:
    parsed = moto_core._parse_json(body)
    value = parsed.get("StreamName") if isinstance(parsed, dict) else None
    assert value == expected


def test_answers_orjson_cannot_write_like_json_go_through_json() -> None:
    class Serializer:
        pretty_print = False

    big = {"n": 2**70, "s": "x"}
    assert json.loads(moto_core._serialize_body(Serializer(), big)) == big  # type: ignore[arg-type]
    data = {"Data": base64.b64encode(b"\x00\xff").decode(), "T": 1733350000.125}
    assert json.loads(moto_core._serialize_body(Serializer(), data)) == data  # type: ignore[arg-type]

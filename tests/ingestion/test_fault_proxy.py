"""The fault proxy really injects each fault between boto3 and the real emulator, and passes
everything else through unchanged."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from stages.common import aws
from stages.common.config import Settings
from tests.ingestion.helpers import read_stream
from tests.support.fault_proxy import FaultProxy

STREAM = "stage01-logs-stream"
BUCKET = "md-raw-logs"
NO_RETRIES = Config(
    retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"}
)


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(endpoint, seed=7) as proxy:
        yield proxy


def _clients(url: str) -> tuple[Any, Any]:
    settings = Settings(aws_endpoint_url=url)
    return (
        aws.client("kinesis", settings, config=NO_RETRIES),
        aws.client("s3", settings, config=NO_RETRIES),
    )


def _entries(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"Data": f"{prefix}-{i}".encode(), "PartitionKey": f"svc-{i % 5}"} for i in range(n)]


def _error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_untouched_traffic_passes_through(proxy: FaultProxy, settings: Settings) -> None:
    kinesis, s3 = _clients(proxy.url)
    direct_kinesis, direct_s3 = _clients(settings.aws_endpoint_url or "")

    answer = kinesis.put_records(StreamName=STREAM, Records=_entries(50))
    assert answer["FailedRecordCount"] == 0
    stored = read_stream(direct_kinesis, STREAM)
    assert sorted(r.data for r in stored.records) == sorted(e["Data"] for e in _entries(50))
    assert (
        kinesis.list_shards(StreamName=STREAM)["Shards"]
        == direct_kinesis.list_shards(StreamName=STREAM)["Shards"]
    )

    # A large object both ways, HEAD's Content-Length, DELETE.
    blob = os.urandom(6 * 1024 * 1024 + 3)
    s3.put_object(Bucket=BUCKET, Key="dir/big.bin", Body=blob)
    assert direct_s3.get_object(Bucket=BUCKET, Key="dir/big.bin")["Body"].read() == blob
    assert s3.get_object(Bucket=BUCKET, Key="dir/big.bin")["Body"].read() == blob
    assert s3.head_object(Bucket=BUCKET, Key="dir/big.bin")["ContentLength"] == len(blob)
    s3.delete_object(Bucket=BUCKET, Key="dir/big.bin")
    with pytest.raises(ClientError):
        direct_s3.head_object(Bucket=BUCKET, Key="dir/big.bin")

    dynamodb = aws.client("dynamodb", Settings(aws_endpoint_url=proxy.url), config=NO_RETRIES)
    assert settings.lease_table in dynamodb.list_tables()["TableNames"]

    assert sum(proxy.injected.values()) == 0
    assert proxy.forwarded["kinesis:PutRecords"] == 1
    assert proxy.forwarded["s3:PUT"] == 1
    assert proxy.forwarded["dynamodb:ListTables"] == 1


def test_chunked_request_bodies_are_forwarded(proxy: FaultProxy, settings: Settings) -> None:
    body = os.urandom(3 * 1024 * 1024)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    headers = {
        # moto routes by the SigV4 credential scope and does not check the signature.
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=0",
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "x-amz-meta-origin": "chunked-test",
    }
    pieces = (body[i : i + 65_536] for i in range(0, len(body), 65_536))
    conn.request("PUT", f"/{BUCKET}/chunked.bin", body=pieces, headers=headers, encode_chunked=True)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    conn.close()
    _, direct_s3 = _clients(settings.aws_endpoint_url or "")
    stored = direct_s3.get_object(Bucket=BUCKET, Key="chunked.bin")
    assert stored["Body"].read() == body
    assert stored["Metadata"] == {"origin": "chunked-test"}


def test_a_body_cut_short_by_its_client_is_not_forwarded(
    proxy: FaultProxy, settings: Settings
) -> None:
    """A client killed mid-upload: the proxy drops the request instead of storing a cut object."""
    body = os.urandom(1_000_000)
    head = (
        f"PUT /{BUCKET}/cut.bin HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n"
        "Authorization: AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=0\r\n"
        f"x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as client:
        client.sendall(head.encode() + body[:300_000])
        client.shutdown(socket.SHUT_WR)  # what the kernel does for a killed process
        assert client.recv(1024) == b"", "the proxy answered a request it never fully received"
    assert proxy.received["s3:PUT"] == 0 and proxy.forwarded["s3:PUT"] == 0
    _, direct_s3 = _clients(settings.aws_endpoint_url or "")
    with pytest.raises(ClientError) as missing:
        direct_s3.head_object(Bucket=BUCKET, Key="cut.bin")
    assert missing.value.response["Error"]["Code"] == "404"


def test_concurrent_requests(proxy: FaultProxy) -> None:
    _, s3 = _clients(proxy.url)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                data = hashlib.sha256(f"{n}-{i}".encode()).digest() * 1000
                s3.put_object(Bucket=BUCKET, Key=f"c/{n}/{i}", Body=data)
                assert s3.get_object(Bucket=BUCKET, Key=f"c/{n}/{i}")["Body"].read() == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert proxy.forwarded["s3:PUT"] == 120
    assert proxy.forwarded["s3:GET"] == 120


def test_putrecords_partial_failures_are_not_written(proxy: FaultProxy, settings: Settings) -> None:
    kinesis, _ = _clients(proxy.url)
    direct_kinesis, _ = _clients(settings.aws_endpoint_url or "")
    proxy.configure(putrecords_partial=0.3)
    entries = _entries(200)
    answer = kinesis.put_records(StreamName=STREAM, Records=entries)

    failed = [i for i, r in enumerate(answer["Records"]) if "ErrorCode" in r]
    assert 20 < len(failed) < 120
    assert answer["FailedRecordCount"] == len(failed)
    assert {answer["Records"][i]["ErrorCode"] for i in failed} == {
        "ProvisionedThroughputExceededException"
    }
    assert proxy.injected["putrecords_partial_entries"] == len(failed)
    assert proxy.injected["putrecords_partial_calls"] == 1

    stored = read_stream(direct_kinesis, STREAM)
    written = {r.data: (r.shard_id, r.sequence_number) for r in stored.records}
    expected = {
        entries[i]["Data"]: (r["ShardId"], r["SequenceNumber"])
        for i, r in enumerate(answer["Records"])
        if i not in failed
    }
    # Exactly the entries reported successful are in the stream, where the answer says.
    assert written == expected

    proxy.inject_next("putrecords_partial")
    answer = kinesis.put_records(StreamName=STREAM, Records=_entries(10, "all-fail"))
    assert answer["FailedRecordCount"] == 10
    proxy.clear()
    answer = kinesis.put_records(StreamName=STREAM, Records=_entries(10, "clean"))
    assert answer["FailedRecordCount"] == 0
    datas = {r.data for r in read_stream(direct_kinesis, STREAM).records}
    assert not any(d.startswith(b"all-fail") for d in datas)
    assert sum(d.startswith(b"clean") for d in datas) == 10


def test_same_seed_same_faults(endpoint: str) -> None:
    outcomes = []
    for _ in range(2):
        with FaultProxy(endpoint, seed=42) as proxy:
            proxy.configure(putrecords_partial=0.5)
            kinesis, _ = _clients(proxy.url)
            answer = kinesis.put_records(StreamName=STREAM, Records=_entries(40))
            outcomes.append([("ErrorCode" in r) for r in answer["Records"]])
    assert outcomes[0] == outcomes[1]
    assert any(outcomes[0]) and not all(outcomes[0])


def test_putrecords_whole_call_throttling(proxy: FaultProxy, settings: Settings) -> None:
    kinesis, _ = _clients(proxy.url)
    direct_kinesis, _ = _clients(settings.aws_endpoint_url or "")
    proxy.configure(putrecords_throttle=1.0)
    with pytest.raises(ClientError) as exc:
        kinesis.put_records(StreamName=STREAM, Records=_entries(5))
    assert _error_code(exc) == "ProvisionedThroughputExceededException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert proxy.injected["putrecords_throttle"] == 1
    assert proxy.forwarded["kinesis:PutRecords"] == 0
    assert read_stream(direct_kinesis, STREAM).records == []

    proxy.configure(putrecords_throttle=0.0)
    assert kinesis.put_records(StreamName=STREAM, Records=_entries(5))["FailedRecordCount"] == 0
    # The proxy saw both calls as the client sent them.
    assert [c.entries for c in proxy.putrecords_calls] == [5, 5]


def test_getrecords_throttling_and_expired_iterators(proxy: FaultProxy) -> None:
    kinesis, _ = _clients(proxy.url)
    kinesis.put_records(StreamName=STREAM, Records=_entries(10))
    shard_id = kinesis.list_shards(StreamName=STREAM)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=STREAM, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]

    proxy.inject_next("getrecords_throttle")
    with pytest.raises(ClientError) as exc:
        kinesis.get_records(ShardIterator=iterator)
    assert _error_code(exc) == "ProvisionedThroughputExceededException"

    proxy.inject_next("getrecords_expired", 2)
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            kinesis.get_records(ShardIterator=iterator)
        assert _error_code(exc) == "ExpiredIteratorException"

    assert kinesis.get_records(ShardIterator=iterator)["Records"]
    assert proxy.injected["getrecords_throttle"] == 1
    assert proxy.injected["getrecords_expired"] == 2
    assert proxy.forwarded["kinesis:GetRecords"] == 1


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "SlowDown")])
def test_s3_put_errors(proxy: FaultProxy, settings: Settings, status: int, code: str) -> None:
    _, s3 = _clients(proxy.url)
    _, direct_s3 = _clients(settings.aws_endpoint_url or "")
    proxy.configure(s3_put_error=1.0, s3_error_statuses=(status,))
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="a/b.jsonl", Body=b"{}\n")
    assert _error_code(exc) == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    with pytest.raises(ClientError):
        direct_s3.head_object(Bucket=BUCKET, Key="a/b.jsonl")
    # Only object writes are hit: bucket-level PUTs and reads go through.
    s3.create_bucket(Bucket="proxy-made-bucket")
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert proxy.injected["s3_put_error"] == 1
    assert proxy.injected[f"s3_put_error_{status}"] == 1

    proxy.clear()
    s3.put_object(Bucket=BUCKET, Key="a/b.jsonl", Body=b"{}\n")
    assert direct_s3.get_object(Bucket=BUCKET, Key="a/b.jsonl")["Body"].read() == b"{}\n"

import base64
import hashlib
import random
import time
import zlib

import httpx
import psutil
import pytest
from botocore.exceptions import ClientError

from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.resource_setup import ensure_resources
from tests.support.processes import Process


def test_health_has_localstack_shape(endpoint: str) -> None:
    resp = httpx.get(f"{endpoint}/_localstack/health")
    assert resp.status_code == 200
    services = resp.json()["services"]
    assert {services["kinesis"], services["s3"], services["dynamodb"]} == {"running"}


def test_emulator_creates_the_catalogue(settings: Settings) -> None:
    kinesis = aws.client("kinesis", settings)
    for spec in resources.streams(settings):
        shards = kinesis.list_shards(StreamName=spec.name)["Shards"]
        assert len(shards) == spec.shards
    assert resources.stream_for_kind(settings, "log").shards >= 2
    names = {b["Name"] for b in aws.client("s3", settings).list_buckets()["Buckets"]}
    assert set(resources.buckets(settings)) <= names
    tables = aws.client("dynamodb", settings).list_tables()["TableNames"]
    assert settings.lease_table in tables


def test_provisioning_twice_changes_nothing(settings: Settings) -> None:
    ensure_resources(settings)
    ensure_resources(settings)
    kinesis = aws.client("kinesis", settings)
    assert len(kinesis.list_streams()["StreamNames"]) == 3
    assert len(aws.client("s3", settings).list_buckets()["Buckets"]) == len(
        resources.buckets(settings)
    )


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def proc_fds(pid: int) -> int:
    return psutil.Process(pid).num_fds()


def _settled_growth(pid: int, before: float) -> float:
    """RSS growth once freed request buffers went back to the OS (MALLOC_TRIM_SECONDS is 2)."""
    deadline = time.monotonic() + 10
    while True:
        grown = _rss_mb(pid) - before
        if grown < 40 or time.monotonic() > deadline:
            return grown
        time.sleep(0.5)


def test_kinesis_and_s3_data_do_not_stay_in_the_emulators_memory(
    emulator: tuple[Process, str], settings: Settings
) -> None:
    """100 MB through Kinesis and 60 MB of S3 objects leave the emulator's RSS almost where it was.

    moto alone kept both in memory (Kinesis data base64-encoded, a third larger), and tracked
    every model instance it ever made, so the same load grew it by more than 200 MB.
    """
    proc, _ = emulator
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    stream = resources.stream_for_kind(settings, "log").name
    bucket = next(iter(resources.buckets(settings)))
    before = _rss_mb(proc.pid)
    fds_before = proc_fds(proc.pid)

    rng = random.Random(7)
    sent: list[bytes] = []
    for batch in range(25):
        entries = [rng.randbytes(200_000) for _ in range(20)]  # 4 MB, under the 5 MiB call limit
        sent.extend(entries)
        answer = kinesis.put_records(
            StreamName=stream,
            Records=[{"Data": d, "PartitionKey": f"k{batch}-{i}"} for i, d in enumerate(entries)],
        )
        assert answer["FailedRecordCount"] == 0
    body = rng.randbytes(1_000_000)
    for i in range(30):
        s3.put_object(Bucket=bucket, Key=f"big/{i}.bin", Body=body)
        s3.put_object(Bucket=bucket, Key=f"big/{i}.bin", Body=body)  # overwritten: freed too
    grown = _settled_growth(proc.pid, before)

    received: list[bytes] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            received.extend(r["Data"] for r in page["Records"])
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    assert sorted(received) == sorted(sent)
    assert s3.get_object(Bucket=bucket, Key="big/29.bin")["Body"].read() == body
    # Each spilled body used to keep a temporary file open; now they share one.
    assert proc_fds(proc.pid) < fds_before + 10
    assert grown < 40, f"the emulator grew by {grown:.0f} MB holding 160 MB of data"
    assert _settled_growth(proc.pid, before) < 40, "reading the records back kept memory"


def test_s3_bodies_on_disk_read_back_through_every_path(settings: Settings) -> None:
    """Ranged reads, copies, multipart uploads and overwrites of bodies the emulator spilled."""
    s3 = aws.client("s3", settings)
    bucket = next(iter(resources.buckets(settings)))
    rng = random.Random(11)
    large = rng.randbytes(300_000)
    small = b"small body"
    s3.put_object(Bucket=bucket, Key="a/large", Body=large)
    s3.put_object(Bucket=bucket, Key="a/small", Body=small)
    got = s3.get_object(Bucket=bucket, Key="a/large", Range="bytes=1000-1999")["Body"].read()
    assert got == large[1000:2000]
    s3.copy_object(Bucket=bucket, Key="a/copy", CopySource={"Bucket": bucket, "Key": "a/large"})
    assert s3.get_object(Bucket=bucket, Key="a/copy")["Body"].read() == large
    head = s3.head_object(Bucket=bucket, Key="a/large")
    assert head["ContentLength"] == len(large)
    assert head["ETag"] == f'"{hashlib.md5(large).hexdigest()}"'

    parts = [rng.randbytes(5 * 1024 * 1024), rng.randbytes(70_000)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="a/multi")["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="a/multi", UploadId=upload, PartNumber=n, Body=part)[
            "ETag"
        ]
        for n, part in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="a/multi",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, start=1)]
        },
    )
    assert s3.get_object(Bucket=bucket, Key="a/multi")["Body"].read() == b"".join(parts)

    s3.put_object(Bucket=bucket, Key="a/large", Body=small)
    assert s3.get_object(Bucket=bucket, Key="a/large")["Body"].read() == small
    assert s3.get_object(Bucket=bucket, Key="a/small")["Body"].read() == small
    assert s3.get_object(Bucket=bucket, Key="a/copy")["Body"].read() == large


def _crc32(body: bytes) -> str:
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_a_put_whose_body_does_not_match_its_digest_is_refused(settings: Settings) -> None:
    """As in S3: 400 BadDigest and nothing stored, so a body cut short on its way (here, the
    whole body's checksum sent with a piece of it) never becomes an object."""
    s3 = aws.client("s3", settings)
    bucket = next(iter(resources.buckets(settings)))
    body = b'{"event_id": "a"}\n' * 100
    cases = {
        "crc32": {"ChecksumCRC32": _crc32(body)},
        "sha256": {"ChecksumSHA256": base64.b64encode(hashlib.sha256(body).digest()).decode()},
        "md5": {"ContentMD5": _md5(body)},
    }
    for name, claimed in cases.items():
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket, Key=f"cut/{name}", Body=body[:40], **claimed)
        error = refused.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400, name
        assert error["Error"]["Code"] == "BadDigest", name
        assert "did not match" in error["Error"]["Message"], name
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket=bucket, Key=f"cut/{name}")
        assert missing.value.response["Error"]["Code"] == "404", name

        # The whole body with the same digest is stored and reads back, checksum and all.
        s3.put_object(Bucket=bucket, Key=f"cut/{name}", Body=body, **claimed)
        got = s3.get_object(Bucket=bucket, Key=f"cut/{name}", ChecksumMode="ENABLED")
        assert got["Body"].read() == body, name

    with pytest.raises(ClientError) as invalid:
        s3.put_object(Bucket=bucket, Key="cut/invalid-md5", Body=body, ContentMD5="not base64!")
    assert invalid.value.response["Error"]["Code"] == "InvalidDigest"


def test_an_emulator_bound_to_every_address_provisions_itself(tmp_path) -> None:
    # Under Compose the emulator binds 0.0.0.0; it provisions itself over HTTP, and a wildcard
    # address is not a Host name it answers, so it must call itself on loopback.
    from tests.support.processes import start_emulator

    proc, endpoint = start_emulator(tmp_path, EMULATOR_HOST="0.0.0.0")
    try:
        settings = Settings(aws_endpoint_url=endpoint)
        names = aws.client("kinesis", settings).list_streams()["StreamNames"]
        assert sorted(names) == sorted(spec.name for spec in resources.streams(settings))
        assert proc.alive()
    finally:
        proc.stop()

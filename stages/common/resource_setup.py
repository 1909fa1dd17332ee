"""Create the catalogue's streams, buckets and lease tables; safe to run any number of times.

Run time code: the embedded emulator provisions itself with it when it starts. The command that
provisions an external endpoint (``python -m stages.ops.provision``, ``stages provision``) calls
the same function.
"""

from __future__ import annotations

import json
import logging
import time

from botocore.exceptions import ClientError

from stages.common import aws, resources
from stages.common.config import Settings

log = logging.getLogger(__name__)


def ensure_resources(settings: Settings, *, wait: bool = True) -> None:
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    dynamodb = aws.client("dynamodb", settings)
    for spec in resources.streams(settings):
        _ensure_stream(kinesis, spec.name, spec.shards)
    for bucket in resources.buckets(settings):
        _ensure_bucket(s3, bucket, aws.region(settings))
    for table in resources.lease_tables(settings):
        ensure_lease_table(dynamodb, table)
    ensure_alert_queues(aws.client("sqs", settings), settings)
    if wait:
        for spec in resources.streams(settings):
            _wait_stream_active(kinesis, spec.name)


def _ensure_stream(kinesis, name: str, shards: int) -> None:
    try:
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        log.info("created stream %s with %d shards", name, shards)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise


def _wait_stream_active(kinesis, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
            "StreamStatus"
        ]
        if status == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {name} still {status} after {timeout}s")
        time.sleep(0.5)


class BucketTaken(Exception):
    """A bucket of the catalogue exists in another AWS account (bucket names are global)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"bucket {name} belongs to another AWS account (bucket names are global): "
            "set BUCKET_PREFIX to a prefix of your own"
        )


def _ensure_bucket(s3, name: str, region: str) -> None:
    # CreateBucket on a bucket one already owns succeeds in us-east-1, so it cannot tell
    # "created" from "was there"; HeadBucket can, and tells someone else's (403) from none (404).
    try:
        s3.head_bucket(Bucket=name)
        return
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in {"403", "AccessDenied", "Forbidden"}:
            raise BucketTaken(name) from exc
        if code not in {"404", "NoSuchBucket", "NotFound"}:
            raise
    kwargs = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
        log.info("created bucket %s", name)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "BucketAlreadyExists":
            raise BucketTaken(name) from exc
        if code != "BucketAlreadyOwnedByYou":
            raise


def ensure_lease_table(dynamodb, name: str) -> None:
    """A lease table: one item per lease, keyed by ``lease_key`` (the consumer's stream:shard,
    the ETL's lease name)."""
    try:
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "lease_key", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "lease_key", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        log.info("created lease table %s", name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=name)


def ensure_alert_queues(sqs, settings: Settings) -> str:
    """The alert queue and its dead-letter queue (FIFO, content-based deduplication off: every
    message carries its own deduplication id); returns the queue's URL."""
    names = resources.alert_queues(settings)
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    dead_letter_url = _ensure_queue(sqs, names.dead_letter, fifo)
    arn = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = json.dumps(
        {"deadLetterTargetArn": arn, "maxReceiveCount": str(resources.ALERT_MAX_RECEIVES)}
    )
    return _ensure_queue(sqs, names.queue, {**fifo, "RedrivePolicy": redrive})


def _ensure_queue(sqs, name: str, attributes: dict[str, str]) -> str:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code not in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}:
            raise
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    log.info("created queue %s", name)
    return url

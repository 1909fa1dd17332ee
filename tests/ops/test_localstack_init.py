"""localstack-init/01-setup-resources.sh creates exactly the Python catalogue.

The script is run for real, with the venv's `awslocal`, against an embedded emulator started
without its own provisioning, and the result is compared with `stages.common.resources` and with
what `stages.ops.provision` creates on a second emulator.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stages.common import aws, resources
from stages.common.config import Settings
from tests.ops.support import clean_env
from tests.support.processes import ROOT, Process, start_emulator

SCRIPT = ROOT / "localstack-init" / "01-setup-resources.sh"
VENV_BIN = ROOT / ".venv" / "bin"


@pytest.fixture
def bare_endpoint(proc_logs: Path) -> Any:
    """An emulator with nothing in it, so the script has to create everything."""
    proc: Process
    proc, endpoint = start_emulator(proc_logs, provision=False)
    yield endpoint
    proc.stop()


def run_script(endpoint: str, **env: str) -> subprocess.CompletedProcess:
    path = f"{VENV_BIN}:{clean_env()['PATH']}"
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env=clean_env(
            PATH=path,
            AWS_ENDPOINT_URL=endpoint,  # what awslocal (localstack_client) honours first
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def created(settings: Settings) -> dict[str, Any]:
    kinesis = aws.client("kinesis", settings)
    streams = {
        name: len(kinesis.list_shards(StreamName=name)["Shards"])
        for name in kinesis.list_streams()["StreamNames"]
    }
    buckets = {b["Name"] for b in aws.client("s3", settings).list_buckets()["Buckets"]}
    dynamodb = aws.client("dynamodb", settings)
    tables = {}
    for name in dynamodb.list_tables()["TableNames"]:
        table = dynamodb.describe_table(TableName=name)["Table"]
        tables[name] = {
            "KeySchema": table["KeySchema"],
            "AttributeDefinitions": table["AttributeDefinitions"],
            "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode"),
        }
    sqs = aws.client("sqs", settings)
    queues = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes.get("RedrivePolicy", "{}"))
        queues[url.rsplit("/", 1)[-1]] = {
            "FifoQueue": attributes.get("FifoQueue"),
            "ContentBasedDeduplication": attributes.get("ContentBasedDeduplication"),
            "deadLetterTarget": redrive.get("deadLetterTargetArn", "").rsplit(":", 1)[-1],
            "maxReceiveCount": str(redrive.get("maxReceiveCount", "")),
        }
    return {"streams": streams, "buckets": buckets, "tables": tables, "queues": queues}


def expected(settings: Settings) -> tuple[dict[str, int], set[str]]:
    return (
        {spec.name: spec.shards for spec in resources.streams(settings)},
        set(resources.buckets(settings)),
    )


def test_defaults_are_those_of_config() -> None:
    text = SCRIPT.read_text()
    defaults = dict(re.findall(r"^(\w+)=\$\{\1:-([^}]*)\}$", text, flags=re.MULTILINE))
    fields = Settings.model_fields
    names = (
        "LEASE_TABLE",
        "ETL_LEASE_TABLE",
        "DETECTION_LEASE_TABLE",
        "STREAM_PREFIX",
        "BUCKET_PREFIX",
    )
    for var in ("LOGS_STREAM_SHARDS", "METRICS_STREAM_SHARDS", "APM_STREAM_SHARDS", *names):
        assert var in defaults, f"{var} is not read by the script"
        assert defaults[var] == str(fields[var.lower()].default), var


def test_script_creates_the_catalogue_and_is_idempotent(bare_endpoint: str, endpoint: str) -> None:
    first = run_script(bare_endpoint)
    assert "created stream stage01-logs-stream" in first.stdout
    second = run_script(bare_endpoint)
    assert "created" not in second.stdout, second.stdout

    settings = Settings(aws_endpoint_url=bare_endpoint)
    streams, buckets = expected(settings)
    got = created(settings)
    assert got["streams"] == streams
    assert got["buckets"] == buckets
    # The lease table is the one resource_setup.py creates, key schema and billing mode included:
    # `endpoint` is an emulator that provisioned itself with the Python code.
    reference = created(Settings(aws_endpoint_url=endpoint))
    assert got["tables"] == reference["tables"]
    assert set(got["tables"]) == set(resources.lease_tables(settings))
    assert reference["streams"] == got["streams"] and reference["buckets"] == got["buckets"]
    # The alert queue and its dead-letter queue, as provision.py makes them.
    queues = resources.alert_queues(settings)
    assert set(got["queues"]) == {queues.queue, queues.dead_letter}
    assert got["queues"] == reference["queues"]
    assert got["queues"][queues.queue]["deadLetterTarget"] == queues.dead_letter


def test_script_honours_the_same_overrides_as_config(bare_endpoint: str) -> None:
    overrides = {
        "LOGS_STREAM_SHARDS": "3",
        "APM_STREAM_SHARDS": "2",
        "LEASE_TABLE": "my-leases",
        "ETL_LEASE_TABLE": "my-etl-leases",
        "DETECTION_LEASE_TABLE": "my-detection-leases",
        "STREAM_PREFIX": "acme-",
        "BUCKET_PREFIX": "acme-lake-",
    }
    run_script(bare_endpoint, **overrides)
    settings = Settings(
        aws_endpoint_url=bare_endpoint,
        logs_stream_shards=3,
        apm_stream_shards=2,
        lease_table="my-leases",
        etl_lease_table="my-etl-leases",
        detection_lease_table="my-detection-leases",
        stream_prefix="acme-",
        bucket_prefix="acme-lake-",
    )
    assert "acme-logs-stream" in expected(settings)[0]
    assert "acme-lake-models" in expected(settings)[1]
    streams, buckets = expected(settings)
    got = created(settings)
    assert got["streams"] == streams
    assert got["buckets"] == buckets
    assert set(got["tables"]) == {"my-leases", "my-etl-leases", "my-detection-leases"}

"""Real AWS without code edits: names, region and S3 addressing come from the environment.

The region and addressing checks build clients only (no network); the names are checked end to
end: provision and a Kinesis consumer, both real processes, on a bare emulator.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stages.common import aws, resources
from stages.common.config import Settings
from tests.support.lake import (
    ConsumerProcess,
    assert_exactly_once,
    make_record,
    put_plain,
    wait_for_lines,
)
from tests.support.processes import ROOT, base_env, start_emulator


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No region variables, a private AWS config file (returned) and fake keys."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    aws._shared_session.cache_clear()
    yield config
    aws._shared_session.cache_clear()


def _region() -> str:
    return aws.client("kinesis", Settings()).meta.region_name


def test_aws_region_wins_over_aws_default_region(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert _region() == "us-west-2"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert _region() == "eu-west-1"


def test_the_profiles_region_is_used_when_no_variable_names_one(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _region() == "us-east-1"
    aws_env.write_text("[profile lake]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_PROFILE", "lake")
    aws._shared_session.cache_clear()
    assert _region() == "eu-central-1"


def test_s3_is_path_style_on_an_emulator_and_virtual_hosted_on_aws(aws_env: Path) -> None:
    def url(settings: Settings) -> str:
        s3 = aws.client("s3", settings)
        return s3.generate_presigned_url("get_object", Params={"Bucket": "md-raw-logs", "Key": "k"})

    assert url(Settings(aws_region="eu-west-1")).startswith(
        "https://md-raw-logs.s3.amazonaws.com/k?"
    )
    for endpoint in ("http://127.0.0.1:4999", "http://localstack:4566", "http://minio:9000"):
        assert url(Settings(aws_endpoint_url=endpoint)).startswith(f"{endpoint}/md-raw-logs/k?")


def test_names_come_from_the_prefix_settings() -> None:
    settings = Settings(stream_prefix="acme-", bucket_prefix="acme-lake-")
    assert [s.name for s in resources.streams(settings)] == [
        "acme-logs-stream",
        "acme-metrics-stream",
        "acme-apm-stream",
    ]
    assert resources.buckets(settings) == (
        "acme-lake-raw-logs",
        "acme-lake-raw-metrics",
        "acme-lake-raw-apm",
        "acme-lake-processed",
        "acme-lake-features",
        "acme-lake-models",
    )


@pytest.mark.parametrize("prefix", ["Acme-", "-acme", "a" * 51, "acme_lake-"])
def test_a_prefix_that_cannot_name_a_bucket_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="bucket_prefix"):
        Settings(bucket_prefix=prefix)


def test_provision_and_the_consumer_use_the_configured_names_and_region(
    proc_logs: Path,
) -> None:
    emulator, endpoint = start_emulator(proc_logs, provision=False)
    names = {
        "STREAM_PREFIX": "acme-",
        "BUCKET_PREFIX": "acme-lake-",
        "LEASE_TABLE": "acme-leases",
        "ETL_LEASE_TABLE": "acme-etl-leases",
        "DETECTION_LEASE_TABLE": "acme-detection-leases",
        "AWS_REGION": "eu-west-1",
    }
    consumer = ConsumerProcess(endpoint, proc_logs, FLUSH_MAX_AGE_SECONDS="0.5", **names)
    try:
        provision = subprocess.run(
            [sys.executable, "-m", "stages.ops.provision"],
            env=base_env(endpoint, **names),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert provision.returncode == 0, provision.stdout + provision.stderr
        settings = Settings(
            aws_endpoint_url=endpoint,
            aws_region="eu-west-1",
            stream_prefix="acme-",
            bucket_prefix="acme-lake-",
        )
        kinesis = aws.client("kinesis", settings)
        s3 = aws.client("s3", settings)
        assert sorted(kinesis.list_streams()["StreamNames"]) == [
            "acme-apm-stream",
            "acme-logs-stream",
            "acme-metrics-stream",
        ]
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert buckets == set(resources.buckets(settings))
        for bucket in buckets:
            assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
        dynamodb = aws.client("dynamodb", settings)
        assert sorted(dynamodb.list_tables()["TableNames"]) == [
            "acme-detection-leases",
            "acme-etl-leases",
            "acme-leases",
        ]
        # Nothing in the region AWS_DEFAULT_REGION (us-east-1) names: AWS_REGION won.
        elsewhere = Settings(aws_endpoint_url=endpoint, aws_region="us-east-1")
        assert aws.client("kinesis", elsewhere).list_streams()["StreamNames"] == []

        consumer.wait_healthy()
        sent = [make_record(i) for i in range(20)]
        put_plain(kinesis, "acme-logs-stream", sent)
        lines = wait_for_lines(s3, "acme-lake-raw-logs", len(sent), timeout=30, proc=consumer)
        assert_exactly_once(lines, sent)
        leases = dynamodb.scan(TableName="acme-leases")["Items"]
        assert {item["lease_key"]["S"].split(":")[0] for item in leases} == {
            "acme-logs-stream",
            "acme-metrics-stream",
            "acme-apm-stream",
        }
    finally:
        consumer.stop()
        emulator.stop()

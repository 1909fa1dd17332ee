import httpx

from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.provision import ensure_resources


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

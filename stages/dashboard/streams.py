"""The configured Kinesis streams as the dashboard shows them: status, shards, retention,
incoming rate, and per-shard lag and checkpoint from the consumer and its lease table."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stages.common.resources import StreamSpec
from stages.common.shard_leases import Lease, ShardLeaseTable
from stages.dashboard.consumer import ConsumerMetrics
from stages.dashboard.metrics import PROBE_FAILURES
from stages.dashboard.sampler import Sample


def describe_streams(
    kinesis: Any,
    leases: ShardLeaseTable,
    specs: tuple[StreamSpec, ...],
    metrics: ConsumerMetrics | None,
    latest: Sample | None,
) -> list[dict[str, Any]]:
    by_key, lease_error = _leases(leases)
    return [_describe(kinesis, spec, by_key, lease_error, metrics, latest) for spec in specs]


def _leases(store: ShardLeaseTable) -> tuple[dict[str, Lease], str | None]:
    try:
        return {lease.key: lease for lease in store.list()}, None
    except (BotoCoreError, ClientError) as exc:
        PROBE_FAILURES.labels("lease_table").inc()
        return {}, f"lease table unreadable: {exc}"


def _describe(
    kinesis: Any,
    spec: StreamSpec,
    leases: dict[str, Lease],
    lease_error: str | None,
    metrics: ConsumerMetrics | None,
    latest: Sample | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "bucket": spec.bucket,
        "incoming_records_per_s": latest.records_in_per_s.get(spec.name) if latest else None,
        "lease_error": lease_error,
    }
    try:
        summary = kinesis.describe_stream_summary(StreamName=spec.name)["StreamDescriptionSummary"]
        shards = _all_shards(kinesis, spec.name)
    except (BotoCoreError, ClientError) as exc:
        PROBE_FAILURES.labels("kinesis").inc()
        return {**entry, "status": "unavailable", "error": str(exc)[:300], "shards": []}
    return {
        **entry,
        "status": summary["StreamStatus"],
        "open_shards": summary.get("OpenShardCount"),
        "retention_hours": summary.get("RetentionPeriodHours"),
        "error": None,
        "shards": [_shard(spec.name, shard, leases, metrics) for shard in shards],
    }


def _all_shards(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    page = kinesis.list_shards(StreamName=stream)
    shards.extend(page["Shards"])
    while page.get("NextToken"):
        page = kinesis.list_shards(NextToken=page["NextToken"])
        shards.extend(page["Shards"])
    return shards


def _shard(
    stream: str, shard: dict[str, Any], leases: dict[str, Lease], metrics: ConsumerMetrics | None
) -> dict[str, Any]:
    shard_id = shard["ShardId"]
    lease = leases.get(f"{stream}:{shard_id}")
    lag = metrics.millis_behind.get((stream, shard_id)) if metrics else None
    return {
        "shard_id": shard_id,
        "open": "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {}),
        "millis_behind_latest": lag,
        "lease_owner": lease.owner if lease else None,
        "checkpoint": lease.checkpoint if lease else None,
    }

"""The AWS resource catalogue: streams (with shard counts), buckets and the lease table.

Names come from settings (``STREAM_PREFIX``, ``BUCKET_PREFIX``, ``LEASE_TABLE``), so the same
code runs against the emulator, LocalStack and an AWS account whose bucket names must be unique.

Read by the embedded emulator's setup, the services and the dashboard;
``localstack-init/01-setup-resources.sh`` creates the same set under LocalStack and a test holds
the two to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stages.common.config import Settings

Kind = Literal["log", "metric", "apm"]


@dataclass(frozen=True)
class StreamSpec:
    """One Kinesis stream and the raw bucket its records land in."""

    kind: Kind
    name: str
    shards: int
    bucket: str


# Data + partition key of one Kinesis record (the service limit). Here rather than in the producer
# so that validating a record's size does not load boto3 into services that never call AWS.
KINESIS_MAX_RECORD_BYTES = 1024 * 1024

# Buckets of the later stages are created too so that the lake layout is complete from day one.
# Each name is BUCKET_PREFIX + one of these.
EXTRA_BUCKET_SUFFIXES: tuple[str, ...] = ("processed", "features", "models")


def streams(settings: Settings) -> tuple[StreamSpec, ...]:
    stream, bucket = settings.stream_prefix, settings.bucket_prefix
    return (
        StreamSpec("log", f"{stream}logs-stream", settings.logs_stream_shards, f"{bucket}raw-logs"),
        StreamSpec(
            "metric",
            f"{stream}metrics-stream",
            settings.metrics_stream_shards,
            f"{bucket}raw-metrics",
        ),
        StreamSpec("apm", f"{stream}apm-stream", settings.apm_stream_shards, f"{bucket}raw-apm"),
    )


def extra_buckets(settings: Settings) -> tuple[str, ...]:
    return tuple(settings.bucket_prefix + suffix for suffix in EXTRA_BUCKET_SUFFIXES)


def stream_for_kind(settings: Settings, kind: str) -> StreamSpec:
    for spec in streams(settings):
        if spec.kind == kind:
            return spec
    raise KeyError(f"no stream for kind {kind!r}")


def stream_by_name(settings: Settings, name: str) -> StreamSpec:
    for spec in streams(settings):
        if spec.name == name:
            return spec
    raise KeyError(f"no stream named {name!r}")


def lease_tables(settings: Settings) -> tuple[str, ...]:
    """The consumer's shard leases, the ETL writer's lease, then detection's service leases;
    same key schema."""
    return (settings.lease_table, settings.etl_lease_table, settings.detection_lease_table)


def buckets(settings: Settings) -> tuple[str, ...]:
    return tuple(spec.bucket for spec in streams(settings)) + extra_buckets(settings)


_KIND_ALIASES = {"log": "log", "logs": "log", "metric": "metric", "metrics": "metric", "apm": "apm"}


def consumer_streams(settings: Settings) -> tuple[StreamSpec, ...]:
    """The streams named by ``CONSUMER_STREAMS`` (kinds, e.g. ``logs,metrics,apm``)."""
    wanted = []
    for item in settings.consumer_streams.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item not in _KIND_ALIASES:
            raise ValueError(f"CONSUMER_STREAMS: unknown kind {item!r} (use logs, metrics, apm)")
        wanted.append(_KIND_ALIASES[item])
    return tuple(spec for spec in streams(settings) if spec.kind in wanted)


# Messages of the alert queue that consumers failed to process this many times move to its
# dead-letter queue (SQS's redrive policy).
ALERT_MAX_RECEIVES = 5


@dataclass(frozen=True)
class AlertQueues:
    """The Stage 06 alert queue (FIFO: one message per event transition, ordered per event) and
    the dead-letter queue its redrive policy moves unprocessable messages to."""

    queue: str
    dead_letter: str


def alert_queues(settings: Settings) -> AlertQueues:
    queue = settings.alert_queue
    return AlertQueues(queue, queue.removesuffix(".fifo") + "-dlq.fifo")


def models_bucket(settings: Settings) -> str:
    """Where detection keeps its checkpoints, events, feedback and alert outbox."""
    return settings.bucket_prefix + "models"

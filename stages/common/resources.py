"""The AWS resource catalogue: streams (with shard counts), buckets and the lease table.

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
EXTRA_BUCKETS: tuple[str, ...] = ("md-processed", "md-features", "md-models")


def streams(settings: Settings) -> tuple[StreamSpec, ...]:
    return (
        StreamSpec("log", "stage01-logs-stream", settings.logs_stream_shards, "md-raw-logs"),
        StreamSpec(
            "metric", "stage01-metrics-stream", settings.metrics_stream_shards, "md-raw-metrics"
        ),
        StreamSpec("apm", "stage01-apm-stream", settings.apm_stream_shards, "md-raw-apm"),
    )


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


def buckets(settings: Settings) -> tuple[str, ...]:
    return tuple(spec.bucket for spec in streams(settings)) + EXTRA_BUCKETS


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

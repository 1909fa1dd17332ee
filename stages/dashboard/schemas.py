"""Request bounds and response models of the dashboard's read-only API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, Field

MAX_KEY_LENGTH = 1024  # S3's own limit on key length
MAX_TOKEN_LENGTH = 4096
MAX_PAGE_SIZE = 1000  # ListObjectsV2's MaxKeys ceiling
DEFAULT_PAGE_SIZE = 100
MAX_SERIES_POINTS = 100_000

BucketName = Annotated[str, Path(min_length=3, max_length=63)]
StreamName = Annotated[str, Path(min_length=1, max_length=128)]
Prefix = Annotated[str, Query(max_length=MAX_KEY_LENGTH)]
Key = Annotated[str, Query(min_length=1, max_length=MAX_KEY_LENGTH)]
Token = Annotated[str | None, Query(min_length=1, max_length=MAX_TOKEN_LENGTH)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Fresh = Annotated[bool, Query(description="List the bucket again instead of a cached summary.")]
ServiceFilter = Annotated[str | None, Query(min_length=1, max_length=128)]
SeriesPoints = Annotated[int, Query(ge=1, le=MAX_SERIES_POINTS)]
# The hard ceiling; DASHBOARD_VIEWER_MAX_LINES may set a lower one.
Lines = Annotated[int, Query(ge=1, le=10_000)]


class BucketSummary(BaseModel):
    bucket: str
    objects: int
    bytes: int
    listed_at: float = Field(description="When the listing finished, unix seconds.")
    age_seconds: float
    list_calls: int
    error: str | None = None


class BucketList(BaseModel):
    buckets: list[BucketSummary]


class ListedObject(BaseModel):
    key: str
    size: int
    last_modified: str


class ListingPage(BaseModel):
    bucket: str
    prefix: str
    prefixes: list[str]
    objects: list[ListedObject]
    next_token: str | None


class ViewerLine(BaseModel):
    line: int
    record: dict[str, Any] | None
    raw: str | None
    anomalous: bool


class LogExcerpt(BaseModel):
    bucket: str
    key: str
    lines_requested: int
    lines: list[ViewerLine]
    anomalous: int
    bytes_read: int
    range_requests: int
    object_size: int | None
    complete: bool
    truncated: bool = Field(description="A bound was reached before the lines asked for.")
    reason: str | None = Field(default=None, description="Which bound, when truncated.")
    decompressed_bytes: int = Field(default=0, description="Bytes inflated from a .gz object.")


class DashboardConfig(BaseModel):
    refresh_seconds: float
    sample_seconds: float
    viewer_max_lines: int
    buckets: list[str]
    streams: list[str]


class HourPartition(BaseModel):
    hour: str
    prefix: str
    objects: int
    bytes: int
    records: int | None = Field(description="Lines, when counting fitted the budget; else null.")
    uncounted: str | None = Field(default=None, description="Why records is null.")
    avg_object_bytes: int
    small_files: bool


class DayPartition(BaseModel):
    day: str
    objects: int
    bytes: int
    records: int | None
    hours: list[HourPartition]


class ServicePartitions(BaseModel):
    service: str
    objects: int
    bytes: int
    records: int | None
    days: list[DayPartition]


class PartitionTree(BaseModel):
    bucket: str
    listed_at: float
    objects: int
    bytes: int
    other_objects: int = Field(description="Objects outside service=/year=/month=/day=/hour=.")
    truncated: bool
    small_file_bytes: int
    small_file_partitions: int
    uncounted_partitions: int = Field(description="Hour partitions whose records are null.")
    cut_short: bool = Field(
        description="Counting stopped at this request's limit (S3 calls or decompressed bytes); "
        "the next request goes on from there."
    )
    cut_reason: str | None = Field(description="Which limit, when cut short.")
    s3_calls: int = Field(description="S3 calls this request made to count records.")
    count_bytes_read: int = Field(description="Object bytes this request read to count.")
    services: list[ServicePartitions]


class ShardView(BaseModel):
    shard_id: str
    open: bool
    millis_behind_latest: float | None = Field(description="The consumer's own gauge.")
    lease_owner: str | None
    checkpoint: str | None


class StreamView(BaseModel):
    name: str
    kind: str
    bucket: str
    status: str
    open_shards: int | None = None
    retention_hours: int | None = None
    incoming_records_per_s: float | None
    error: str | None
    lease_error: str | None
    shards: list[ShardView]


class StreamList(BaseModel):
    streams: list[StreamView]


class ConsumerStatus(BaseModel):
    state: Literal["running", "unhealthy", "unreachable"]
    url: str
    checked_at: float
    reason: str | None
    health: dict[str, Any] | None


class TimeSeries(BaseModel):
    period_seconds: float
    t: list[float]
    records_in_per_s: dict[str, list[float | None]]
    records_out_per_s: list[float | None]
    objects_per_s: list[float | None]
    max_lag_ms: dict[str, list[float | None]]


TableName = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[a-z_][a-z0-9_]*$")]


class TableView(BaseModel):
    """One Iceberg table, from its metadata (snapshot summary, manifests), never its data."""

    name: str
    identifier: str
    location: str
    format_version: int
    partitioned_by: list[str]
    snapshots: int
    snapshot_id: int | None
    operation: str | None = Field(description="What the current snapshot did (append, ...).")
    rows: int
    data_files: int
    total_bytes: int
    avg_file_bytes: int | None
    last_commit: str | None = Field(description="The current snapshot's time, RFC 3339 UTC.")
    last_commit_age_seconds: float | None
    event_time_column: str | None = Field(description="The column freshness is measured on.")
    newest: str | None = Field(description="The newest event time the manifests record.")
    freshness_seconds: float | None = Field(description="Now minus newest.")
    error: str | None = None


class TableList(BaseModel):
    namespace: str
    checked_at: float
    quarantined_rows: int | None = Field(description="Rows of the quarantine table; null: none.")
    tables: list[TableView]

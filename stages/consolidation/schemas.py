"""Request and response bodies of Log Consolidation's JSON API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from stages.common.validation import RecordBatch, RejectedRecord

MAX_QUERY_LIMIT = 1_000
Severity = Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


class LogBatchRequest(RecordBatch):
    """Canonical records (see the Ingestion Interface); each is checked on its own."""


class LogBatchResponse(BaseModel):
    accepted: int
    rejected: list[RejectedRecord]


class LogEntryOut(BaseModel):
    timestamp: str
    time_unix_nano: str
    service: str
    host: str | None
    severity_number: int
    severity_text: str
    body: str
    trace_id: str | None
    span_id: str | None
    is_anomaly: bool
    attributes: dict[str, Any]


class LogList(BaseModel):
    count: int
    logs: list[LogEntryOut]


class Stats(BaseModel):
    total: int
    anomalous: int
    by_service: dict[str, int]
    by_severity: dict[str, int]
    recent_window: int
    recent_capacity: int
    counters: dict[str, int]
    files: int


class TimelineBucket(BaseModel):
    start: str
    count: int
    anomalous: int


class Timeline(BaseModel):
    bucket_seconds: int
    buckets: list[TimelineBucket]

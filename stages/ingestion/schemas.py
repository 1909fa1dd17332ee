"""Request and response bodies of the Ingestion Interface."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH_RECORDS = 5_000
MAX_BODY_BYTES = 10 * 1024 * 1024


class IngestBatchRequest(BaseModel):
    """Records are checked one by one against the canonical ``Record`` (see ``/api/ingest``)."""

    model_config = ConfigDict(extra="forbid")

    records: list[Any] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)


class RejectedRecord(BaseModel):
    index: int
    problems: list[str]


class IngestResponse(BaseModel):
    accepted: int = Field(description="records on Kinesis or in the on-disk spool")
    rejected: list[RejectedRecord]
    spooled: int = Field(description="of the accepted, how many wait in the spool for Kinesis")


class IngestMetrics(BaseModel):
    counters: dict[str, int]
    spool_bytes: int
    spool_segments: int
    consolidation_queue_batches: int
    consolidation_queue_bytes: int

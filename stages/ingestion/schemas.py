"""Request and response bodies of the Ingestion Interface."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from stages.common.validation import RecordBatch, RejectedRecord


class IngestBatchRequest(RecordBatch):
    """Records are checked one by one against the canonical ``Record`` (see ``/api/ingest``)."""


class RecordResult(BaseModel):
    index: int = Field(description="the record's position in the request")
    event_id: str | None = Field(
        description="the record's event_id, assigned by ingestion when it had none (null only "
        "for a rejected record without one); a retry sends the record with this id"
    )
    status: Literal["accepted", "rejected", "retry"] = Field(
        description="accepted: on Kinesis or in the spool, never send it again; rejected: "
        "invalid, the same record is refused again; retry: not accepted, send it again"
    )
    error: str | None = Field(None, description="why, for a rejected or retry record")


class IngestResponse(BaseModel):
    accepted: int = Field(description="records on Kinesis or in the on-disk spool")
    rejected: list[RejectedRecord]
    spooled: int = Field(description="of the accepted, how many wait in the spool for Kinesis")
    retry: int = Field(0, description="records not accepted, to send again (0 in a 200)")
    results: list[RecordResult] = Field(
        default_factory=list, description="one per request record, in the request's order"
    )


class IngestUnavailable(BaseModel):
    """A 503: some records were not accepted; ``detail`` says which, record by record."""

    error: str = Field(description="unavailable")
    message: str
    detail: IngestResponse | None = Field(
        None, description="the per-record answer: which records are in, which to send again"
    )


class IngestMetrics(BaseModel):
    counters: dict[str, int]
    spool_bytes: int
    spool_segments: int
    consolidation_queue_batches: int
    consolidation_queue_bytes: int

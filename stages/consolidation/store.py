"""Where both inputs end: canonical batches and OTLP requests become OTLP-JSON lines on disk
and entries in the query index."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from stages.common.counters import OutcomeCounters
from stages.common.errors import Unavailable, Unprocessable
from stages.common.records import Record
from stages.common.validation import Rejection, validate_records
from stages.consolidation.canonical import records_to_otlp_json
from stages.consolidation.export import OtlpExporter
from stages.consolidation.otel import records_to_request, to_otlp_json
from stages.consolidation.query import LogIndex, entries_from_request
from stages.consolidation.writer import RotatingWriter

log = logging.getLogger(__name__)

COUNTER_NAMES = (
    "received",
    "accepted",
    "rejected",
    "otlp_requests",
    "otlp_records",
    "otlp_rejected",
    "write_failures",
    "lines_written",
    "exported",
    "export_retried",
    "export_failed",
    "export_dropped",
)


def consolidation_counters() -> OutcomeCounters:
    return OutcomeCounters("consolidation", COUNTER_NAMES, "Log Consolidation record outcomes")


class CannotStore(Unavailable):
    """The consolidated file could not be written; the sender retries."""


@dataclass
class BatchResult:
    accepted: int
    rejected: list[dict[str, Any]] = field(default_factory=list)


# OTLP carries time as nanoseconds since the epoch in 64 bits; canonical timestamps (RFC 3339,
# UTC, 4-digit year) compare as strings, so the check costs no parsing.
OTLP_EARLIEST = "1677-09-21T00:12:43.146Z"
OTLP_LATEST = "2262-04-11T23:47:16.854Z"


def _within_otlp_time(
    records: list[Record], rejected: list[Rejection], total: int
) -> tuple[list[Record], list[Rejection]]:
    """The records OTLP can carry, and a rejection (by batch index) for each one it cannot."""
    if all(OTLP_EARLIEST <= r.timestamp <= OTLP_LATEST for r in records):
        return records, []
    refused = {r.index for r in rejected}
    indices = [i for i in range(total) if i not in refused]  # validated records keep batch order
    kept: list[Record] = []
    out: list[Rejection] = []
    for index, record in zip(indices, records, strict=True):
        if OTLP_EARLIEST <= record.timestamp <= OTLP_LATEST:
            kept.append(record)
        else:
            problem = f"timestamp: OTLP carries {OTLP_EARLIEST} to {OTLP_LATEST} only"
            out.append(Rejection(index, [problem]))
    return kept, out


def _index(rejection: Rejection) -> int:
    return rejection.index


class Consolidator:
    def __init__(
        self,
        writer: RotatingWriter,
        index: LogIndex,
        counters: OutcomeCounters,
        *,
        environment: str,
        exporter: OtlpExporter | None = None,
    ) -> None:
        self._writer = writer
        self._exporter = exporter
        self.index = index
        self.counters = counters
        self._environment = environment

    def add_records(self, raw: list[Any]) -> BatchResult:
        """Canonical records (what ingestion forwards): validated, normalised, stored."""
        validated = validate_records(raw, wire=False)
        records, out_of_range = _within_otlp_time(validated.records, validated.rejected, len(raw))
        rejected = [r.to_dict() for r in sorted(validated.rejected + out_of_range, key=_index)]
        self.counters.inc("received", len(raw))
        self.counters.inc("rejected", len(rejected))
        if not records:
            raise Unprocessable("none of the records is valid", detail=rejected)
        self._store_records(records)
        self.counters.inc("accepted", len(records))
        return BatchResult(accepted=len(records), rejected=rejected)

    def add_request(self, request: ExportLogsServiceRequest, rejected: int) -> int:
        """An OTLP request already screened by the receiver; returns how many records it held."""
        count = sum(
            len(scope.log_records) for res in request.resource_logs for scope in res.scope_logs
        )
        self.counters.inc("otlp_requests")
        self.counters.inc("otlp_rejected", rejected)
        if count:
            self._store(request)
        self.counters.inc("otlp_records", count)
        return count

    def _store_records(self, records: list[Any]) -> None:
        observed = time.time_ns()
        # The exporter sends protobuf, so with one configured the messages are built anyway.
        direct = (
            records_to_otlp_json(records, self._environment, observed)
            if self._exporter is None
            else None
        )
        if direct is None:
            self._store(records_to_request(records, self._environment, observed))
        else:
            document, entries = direct
            self._write(orjson.dumps(document) + b"\n")
            self.index.add(entries)

    def _store(self, request: ExportLogsServiceRequest) -> None:
        self._write(orjson.dumps(to_otlp_json(request)) + b"\n")
        entries = entries_from_request(request)
        self.index.add(entries)
        if self._exporter is not None:
            self._exporter.offer(request, len(entries))

    def _write(self, line: bytes) -> None:
        try:
            self._writer.write_line(line)
        except OSError as exc:
            self.counters.inc("write_failures")
            log.error("cannot write the consolidated file: %s", exc)
            raise CannotStore(f"cannot write the consolidated file: {exc.strerror or exc}") from exc
        self.counters.inc("lines_written")

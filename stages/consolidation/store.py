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
from stages.consolidation.canonical import records_to_otlp_json
from stages.consolidation.export import OtlpExporter
from stages.consolidation.otel import records_to_request, to_otlp_json
from stages.consolidation.query import LogIndex, entries_from_request
from stages.consolidation.writer import RotatingWriter
from stages.ingestion.validate import validate_records

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
        validated = validate_records(raw)
        rejected = [r.to_dict() for r in validated.rejected]
        self.counters.inc("received", len(raw))
        self.counters.inc("rejected", len(rejected))
        if not validated.records:
            raise Unprocessable("none of the records is valid", detail=rejected)
        self._store_records(validated.records)
        self.counters.inc("accepted", len(validated.records))
        return BatchResult(accepted=len(validated.records), rejected=rejected)

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

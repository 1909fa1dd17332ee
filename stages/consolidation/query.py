"""The query side: a bounded in-memory window of recent records plus running counters.

Nothing here reads the files: every answer comes from the ring buffer (recent, search) or from
counters kept as records arrive (stats, timeline), so query cost does not grow with the files.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from stages.consolidation.otel import SEVERITY_NUMBERS, severity_text_for

# Distinct services counted by name; beyond this (OTLP senders choose their own names) the rest
# are counted together, so a noisy sender cannot grow the counters without bound.
MAX_TRACKED_SERVICES = 1_000
OTHER_SERVICES = "(other)"
# The timeline keeps per-second counts for this many distinct seconds (a day of record time).
TIMELINE_SECONDS = 24 * 3600
UNKNOWN_SERVICE = "unknown_service"


@dataclass(slots=True)
class LogEntry:
    time_unix_nano: int
    service: str
    host: str | None
    severity_number: int
    severity_text: str
    body: str
    trace_id: str
    span_id: str
    is_anomaly: bool
    # As JSON text: the index holds tens of thousands of entries and a dict of ~20 attributes
    # costs several times its JSON; only the answers to queries are decoded. Text, not the
    # bytes orjson returns: those keep orjson's whole output buffer allocated.
    attributes_json: str = "{}"

    def to_dict(self) -> dict[str, Any]:
        moment = datetime.fromtimestamp(self.time_unix_nano / 1e9, UTC)
        return {
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "time_unix_nano": str(self.time_unix_nano),
            "service": self.service,
            "host": self.host,
            "severity_number": self.severity_number,
            "severity_text": self.severity_text,
            "body": self.body,
            "trace_id": self.trace_id or None,
            "span_id": self.span_id or None,
            "is_anomaly": self.is_anomaly,
            "attributes": orjson.loads(self.attributes_json),
        }


def plain_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, which)
    if which is None:
        return None
    return json_format.MessageToDict(value)


def plain_attributes(attributes: list[KeyValue] | Any) -> dict[str, Any]:
    return {kv.key: plain_value(kv.value) for kv in attributes}


def entries_from_request(request: ExportLogsServiceRequest) -> list[LogEntry]:
    entries = []
    for resource_logs in request.resource_logs:
        resource = plain_attributes(resource_logs.resource.attributes)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        host = resource.get("host.name")
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = plain_attributes(record.attributes)
                body = plain_value(record.body)
                entries.append(
                    LogEntry(
                        time_unix_nano=record.time_unix_nano or record.observed_time_unix_nano,
                        service=service,
                        host=str(host) if host is not None else None,
                        severity_number=record.severity_number,
                        severity_text=record.severity_text
                        or severity_text_for(record.severity_number),
                        body=body if isinstance(body, str) else str(body),
                        trace_id=record.trace_id.hex(),
                        span_id=record.span_id.hex(),
                        is_anomaly=attributes.get("is_anomaly") is True,
                        attributes_json=orjson.dumps(attributes).decode(),
                    )
                )
    return entries


def severity_range(level: str) -> range:
    first = SEVERITY_NUMBERS[level]
    return range(first, first + 4)


class LogIndex:
    def __init__(self, capacity: int) -> None:
        self._lock = threading.Lock()
        self._recent: deque[LogEntry] = deque(maxlen=capacity)
        self._total = 0
        self._anomalous = 0
        self._by_service: Counter[str] = Counter()
        self._by_severity: Counter[str] = Counter()
        self._per_second: Counter[int] = Counter()
        self._anomalous_per_second: Counter[int] = Counter()

    def add(self, entries: list[LogEntry]) -> None:
        with self._lock:
            for entry in entries:
                self._recent.append(entry)
                self._total += 1
                service = entry.service
                if (
                    service not in self._by_service
                    and len(self._by_service) >= MAX_TRACKED_SERVICES
                ):
                    service = OTHER_SERVICES
                self._by_service[service] += 1
                self._by_severity[severity_text_for(entry.severity_number)] += 1
                second = entry.time_unix_nano // 1_000_000_000
                self._per_second[second] += 1
                if entry.is_anomaly:
                    self._anomalous += 1
                    self._anomalous_per_second[second] += 1
            self._trim_timeline()

    def recent(self, limit: int) -> list[dict[str, Any]]:
        return self.search(limit=limit)

    def search(
        self,
        *,
        limit: int,
        service: str | None = None,
        severity: str | None = None,
        text: str | None = None,
        anomalous: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, over the recent window; ``text`` matches the body case-insensitively."""
        wanted = severity_range(severity) if severity else None
        needle = text.lower() if text else None
        with self._lock:
            window = list(self._recent)
        found = []
        for entry in reversed(window):
            if service is not None and entry.service != service:
                continue
            if wanted is not None and entry.severity_number not in wanted:
                continue
            if anomalous is not None and entry.is_anomaly != anomalous:
                continue
            if needle is not None and needle not in entry.body.lower():
                continue
            found.append(entry.to_dict())
            if len(found) >= limit:
                break
        return found

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "anomalous": self._anomalous,
                "by_service": dict(self._by_service.most_common()),
                "by_severity": dict(self._by_severity.most_common()),
                "recent_window": len(self._recent),
                "recent_capacity": self._recent.maxlen,
            }

    def timeline(self, bucket_seconds: int, buckets: int) -> list[dict[str, Any]]:
        """Counts per bucket of record time, the newest ``buckets`` buckets that have records."""
        totals: Counter[int] = Counter()
        anomalous: Counter[int] = Counter()
        with self._lock:
            for second, count in self._per_second.items():
                totals[second - second % bucket_seconds] += count
            for second, count in self._anomalous_per_second.items():
                anomalous[second - second % bucket_seconds] += count
        starts = sorted(totals)[-buckets:]
        return [
            {
                "start": datetime.fromtimestamp(start, UTC).isoformat().replace("+00:00", "Z"),
                "count": totals[start],
                "anomalous": anomalous[start],
            }
            for start in starts
        ]

    def _trim_timeline(self) -> None:
        # Trimmed in steps so the sort runs once per many seconds, not on every add.
        if len(self._per_second) <= TIMELINE_SECONDS + 3600:
            return
        for second in sorted(self._per_second)[: len(self._per_second) - TIMELINE_SECONDS]:
            del self._per_second[second]
            self._anomalous_per_second.pop(second, None)

"""Anomaly events and their feedback, durable in the models bucket, served by ``/api/anomalies``.

Each event is one JSON object ``detection/events/<sha256 of id>.json`` rewritten at each of its
transitions (open, update, close); the feedback on an event is a separate object
``detection/feedback/<sha256 of id>.json``, so that the detection loop rewriting an event never
overwrites a verdict a user gave meanwhile. Keys are hashes: ids contain service names, which
come from the data. Everything is loaded into memory at start and kept there (an event is a few
hundred bytes).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

EVENTS_PREFIX = "detection/events/"
FEEDBACK_PREFIX = "detection/feedback/"

Verdict = Literal["true_positive", "false_positive"]


class EventNotFound(KeyError):
    pass


def _digest(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def event_document(service: str, event: dict[str, Any]) -> dict[str, Any]:
    """The public shape of an event (``AnomalyEvent.to_dict()`` plus the service)."""
    closed = event["state"] == "closed"
    return {
        "id": event["id"],
        "service": service,
        "signals": list(event["signals"]),
        "start": iso(event["start"]),
        "end": iso(event["end"]) if closed else None,
        "last_anomalous": iso(event["end"]),
        "peak_score": round(float(event["peak_score"]), 6),
        "peak_at": iso(event["peak_at"]),
        "voters": list(event["voters"]),
        "severity": event["severity"],
        "state": event["state"],
        "points": int(event["points"]),
        "start_epoch": float(event["start"]),
    }


@dataclass(frozen=True, slots=True)
class EventFilter:
    service: str | None = None
    state: Literal["open", "closed"] | None = None
    since: float | None = None  # events that end (or are still open) at or after this
    until: float | None = None  # events that start at or before this


class EventStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self._lock = threading.Lock()
        self._events: dict[str, dict[str, Any]] = {}
        self._feedback: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        events = self._read_all(EVENTS_PREFIX)
        feedback = self._read_all(FEEDBACK_PREFIX)
        with self._lock:
            self._events = {e["id"]: e for e in events}
            self._feedback = {f["event_id"]: f for f in feedback}

    def _read_all(self, prefix: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                found.append(orjson.loads(body))
        return found

    def put(self, document: dict[str, Any]) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=f"{EVENTS_PREFIX}{_digest(document['id'])}.json",
            Body=orjson.dumps(document),
            ContentType="application/json",
        )
        with self._lock:
            self._events[document["id"]] = document

    def get(self, event_id: str) -> dict[str, Any]:
        with self._lock:
            event = self._events.get(event_id)
            if event is None:
                raise EventNotFound(event_id)
            return {**event, "feedback": self._feedback.get(event_id)}

    def list(self, where: EventFilter) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._events.values())
            feedback = dict(self._feedback)
        chosen = []
        for event in events:
            if where.service is not None and event["service"] != where.service:
                continue
            if where.state is not None and event["state"] != where.state:
                continue
            if where.until is not None and event["start_epoch"] > where.until:
                continue
            if where.since is not None and event["state"] == "closed":
                last = datetime.fromisoformat(event["last_anomalous"]).timestamp()
                if last < where.since:
                    continue
            chosen.append({**event, "feedback": feedback.get(event["id"])})
        chosen.sort(key=lambda e: (e["start_epoch"], e["id"]))
        return chosen

    def feedback(self, event_id: str, verdict: Verdict, note: str | None) -> dict[str, Any]:
        with self._lock:
            if event_id not in self._events:
                raise EventNotFound(event_id)
        record = {
            "event_id": event_id,
            "verdict": verdict,
            "note": note,
            "at": iso(datetime.now(UTC).timestamp()),
        }
        self.s3.put_object(
            Bucket=self.bucket,
            Key=f"{FEEDBACK_PREFIX}{_digest(event_id)}.json",
            Body=orjson.dumps(record),
            ContentType="application/json",
        )
        with self._lock:
            self._feedback[event_id] = record
        return record

    def counts(self) -> dict[str, int]:
        with self._lock:
            events = list(self._events.values())
            return {
                "events": len(events),
                "open": sum(1 for e in events if e["state"] == "open"),
                "feedback": len(self._feedback),
            }

"""Anomaly events and their feedback, durable in the models bucket, served by ``/api/anomalies``.

Each event is one JSON object ``detection/events/<sha256 of id>.json`` rewritten at each of its
transitions (open, update, close); the feedback on an event is a separate object
``detection/feedback/<sha256 of id>.json``, so that the detection loop rewriting an event never
overwrites a verdict a user gave meanwhile. Keys are hashes: ids contain service names, which
come from the data. Everything is loaded into memory at start and kept there (an event is a few
hundred bytes).

Several detection processes share the store, each writing the events of the services it holds:
:meth:`EventStore.refresh` (at every round, and before answering a request when the last one is
older than ``max_age`` seconds) lists both prefixes and reads only the objects whose ETag
changed, so every process answers for every service.
"""

from __future__ import annotations

import hashlib
import threading
import time
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


def event_document(service: str, event: dict[str, Any], *, history: bool = False) -> dict[str, Any]:
    """The public shape of an event (``AnomalyEvent.to_dict()`` plus the service). ``history``:
    found by a replay of buckets that arrived behind the live ones, never alerted."""
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
        "history": history,
        "start_epoch": float(event["start"]),
    }


@dataclass(frozen=True, slots=True)
class EventFilter:
    service: str | None = None
    state: Literal["open", "closed"] | None = None
    since: float | None = None  # events that end (or are still open) at or after this
    until: float | None = None  # events that start at or before this


class EventStore:
    def __init__(self, s3: Any, bucket: str, max_age: float | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        # None: the in-memory copy is only refreshed by explicit calls (one writer).
        self.max_age = max_age
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._events: dict[str, dict[str, Any]] = {}
        self._feedback: dict[str, dict[str, Any]] = {}
        self._etags: dict[str, str] = {}  # key -> ETag of the version held in memory
        self._refreshed = 0.0  # monotonic

    def load(self) -> None:
        with self._lock:
            self._events, self._feedback, self._etags = {}, {}, {}
        self.refresh()

    def refresh(self) -> None:
        """Read the events and feedback written (by any process) since the last refresh."""
        with self._refresh_lock:
            began = time.monotonic()
            for prefix in (EVENTS_PREFIX, FEEDBACK_PREFIX):
                self._refresh_prefix(prefix)
            self._refreshed = began

    def _refresh_if_stale(self) -> None:
        if self.max_age is not None and time.monotonic() - self._refreshed >= self.max_age:
            self.refresh()

    def _refresh_prefix(self, prefix: str) -> None:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                with self._lock:
                    known = self._etags.get(key)
                if known == item["ETag"]:
                    continue
                answer = self.s3.get_object(Bucket=self.bucket, Key=key)
                document = orjson.loads(answer["Body"].read())
                with self._lock:
                    if self._etags.get(key) != known:
                        continue  # this process wrote it meanwhile: its copy is the newer
                    self._etags[key] = answer["ETag"]
                    if prefix == EVENTS_PREFIX:
                        self._events[document["id"]] = document
                    else:
                        self._feedback[document["event_id"]] = document

    def put(self, document: dict[str, Any]) -> None:
        key = f"{EVENTS_PREFIX}{_digest(document['id'])}.json"
        answer = self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=orjson.dumps(document),
            ContentType="application/json",
        )
        with self._lock:
            self._events[document["id"]] = document
            self._etags[key] = answer["ETag"]

    def get(self, event_id: str) -> dict[str, Any]:
        self._refresh_if_stale()
        with self._lock:
            event = self._events.get(event_id)
            if event is None:
                raise EventNotFound(event_id)
            return {**event, "feedback": self._feedback.get(event_id)}

    def list(self, where: EventFilter) -> list[dict[str, Any]]:
        self._refresh_if_stale()
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
        self._refresh_if_stale()
        with self._lock:
            if event_id not in self._events:
                raise EventNotFound(event_id)
        record = {
            "event_id": event_id,
            "verdict": verdict,
            "note": note,
            "at": iso(datetime.now(UTC).timestamp()),
        }
        key = f"{FEEDBACK_PREFIX}{_digest(event_id)}.json"
        answer = self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=orjson.dumps(record), ContentType="application/json"
        )
        with self._lock:
            self._feedback[event_id] = record
            self._etags[key] = answer["ETag"]
        return record

    def counts(self) -> dict[str, int]:
        with self._lock:
            events = list(self._events.values())
            return {
                "events": len(events),
                "open": sum(1 for e in events if e["state"] == "open"),
                "feedback": len(self._feedback),
            }

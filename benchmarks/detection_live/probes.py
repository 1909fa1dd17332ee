"""What the live benchmark watches while it runs: the alert queue, the events API and, at the
end, when each opening bucket reached the features table."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from pyiceberg.expressions import And, EqualTo
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation


@dataclass(frozen=True)
class Alert:
    """One message of the alert queue as the benchmark received it."""

    received_at: float  # epoch seconds, when the benchmark's receive call returned it
    sent_at: float  # epoch seconds, SQS's SentTimestamp (when detection sent it)
    action: str  # open, update, close
    event: dict[str, Any]

    @property
    def service(self) -> str:
        return str(self.event.get("service"))

    @property
    def event_id(self) -> str:
        return str(self.event.get("id"))


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class QueueWatcher:
    """Receives (and deletes) every message of the alert queue on a thread of its own, keeping
    each with the time it arrived. The benchmark is the queue's only consumer."""

    sqs: Any
    queue_url: str
    alerts: list[Alert] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unreadable: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ttd-queue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def snapshot(self) -> list[Alert]:
        with self._lock:
            return list(self.alerts)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.receive_once()
            except Exception as exc:  # shown in the report; the next call tries again
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                self._stop.wait(1.0)

    def receive_once(self) -> int:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["SentTimestamp"],
        )
        now = time.time()
        messages = answer.get("Messages", [])
        for message in messages:
            try:
                body = orjson.loads(message["Body"])
                sent = int(message["Attributes"]["SentTimestamp"]) / 1000
                alert = Alert(now, sent, str(body["action"]), dict(body["event"]))
            except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
                self.unreadable += 1
            else:
                with self._lock:
                    self.alerts.append(alert)
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def open_services(self) -> set[str]:
        """Services with an event opened and not yet closed, as the queue told it."""
        state: dict[str, str] = {}
        for alert in self.snapshot():
            if alert.action in ("open", "close"):
                state[alert.event_id] = alert.action if alert.action == "close" else alert.service
        return {value for value in state.values() if value != "close"}


@dataclass
class EventsWatcher:
    """Polls the detection service's ``GET /api/anomalies`` and keeps when each event was first
    listed there."""

    url: str
    every: float = 1.0
    first_seen: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ttd-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                try:
                    answer = http.get(f"{self.url}/api/anomalies")
                    answer.raise_for_status()
                    now = time.time()
                    for event in answer.json():
                        self.first_seen.setdefault(str(event["id"]), now)
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                self._stop.wait(self.every)


def first_commit_with(table: Table, service: str, bucket_start: float) -> float | None:
    """Epoch seconds of the first snapshot of the features table that holds a row of
    ``service`` for the bucket starting at ``bucket_start``; None when no kept snapshot holds
    it, or when the oldest kept snapshot already does (its first commit was expired).

    A rebuild replaces a partition by a delete and an append in one transaction, which makes
    two snapshots: the delete's lacks the partition. Among the append snapshots a written bucket
    stays in every later one, so those are binary-searched."""
    start = datetime.fromtimestamp(bucket_start, UTC)
    row_filter = And(
        EqualTo("service", service),
        And(
            EqualTo("dt", start.date().isoformat()),
            And(EqualTo("hr", start.hour), EqualTo("bucket_start", start.isoformat())),
        ),
    )

    def holds(snapshot_id: int) -> bool:
        scan = table.scan(
            row_filter=row_filter, snapshot_id=snapshot_id, selected_fields=("bucket_start",)
        )
        return scan.to_arrow().num_rows > 0

    snapshots = sorted(
        (s for s in table.snapshots() if s.summary and s.summary.operation == Operation.APPEND),
        key=lambda s: (s.sequence_number or 0, s.timestamp_ms),
    )
    low, high = 0, len(snapshots)
    while low < high:
        middle = (low + high) // 2
        if holds(snapshots[middle].snapshot_id):
            high = middle
        else:
            low = middle + 1
    if low >= len(snapshots) or low == 0:
        return None
    return snapshots[low].timestamp_ms / 1000

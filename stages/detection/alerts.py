"""Stage 06 alerts: every event transition (open, update = severity rose, close = resolve) goes
to each target (the SQS alert queue, the ``telemetry.anomalies`` table, and the webhook when
``ALERT_WEBHOOK_URL`` is set) through an outbox in the models bucket.

Delivery contract:

- A transition is put in the outbox (``detection/outbox/<target>/<sha256>.json``) *before* the
  checkpoint that contains it is written, tagged with that checkpoint's generation. After the
  checkpoint, the outbox is delivered; an entry is deleted only once its target accepted it.
- At start, entries of a generation newer than the service's checkpoint are deleted: the
  checkpoint never happened, so rescoring the same buckets recreates them (same keys, same
  content). Older entries are delivered: they are transitions a checkpoint holds.
- SQS: a FIFO queue, ``MessageGroupId`` = the event id (an incident's messages stay in order),
  ``MessageDeduplicationId`` = event id + transition, so a resend after a crash between send and
  delete is dropped by SQS (within its 5-minute deduplication window).
- A delivery that fails is retried ``ALERT_SEND_ATTEMPTS`` times with backoff; if it still
  fails, the entry stays in the outbox (counted as failed) and is retried at the next round.
  After ``ALERT_DEAD_LETTER_AFTER`` failed rounds it moves to ``detection/dead-letter/`` with the
  last error (counted as dead-lettered): never dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from stages.common.retry import backoff_delay

log = logging.getLogger(__name__)

OUTBOX_PREFIX = "detection/outbox/"
DEAD_LETTER_PREFIX = "detection/dead-letter/"
TARGETS = ("sqs", "lake", "webhook")
_SQS_ID = re.compile(r"^[!-~]{1,128}$")


def dedup_id(event_id: str, action: str) -> str:
    return f"{event_id}:{action}"


def sqs_id(text: str) -> str:
    """An SQS group/deduplication id: the text itself when SQS takes it, else its hash."""
    return text if _SQS_ID.match(text) else hashlib.sha256(text.encode()).hexdigest()


def summary(message: dict[str, Any]) -> str:
    event = message["event"]
    verb = {"open": "opened", "update": "escalated", "close": "resolved"}[message["action"]]
    signals = ", ".join(event["signals"]) or "-"
    voters = ", ".join(event["voters"]) or "-"
    text = (
        f"[{event['severity'].upper()}] anomaly {verb} on {event['service']}: {signals} "
        f"(peak score {event['peak_score']:.2f} at {event['peak_at']}, detectors {voters}; "
        f"since {event['start']}"
    )
    if message["action"] == "close":
        text += f", until {event['end']}"
    return text + f") id {event['id']}"


def message(action: str, event: dict[str, Any]) -> dict[str, Any]:
    """The alert body: what SQS and the lake receive; the webhook gets ``{"text": ...}``."""
    body = {
        "type": f"anomaly.{action}",
        "action": action,
        "dedup_id": dedup_id(event["id"], action),
        "event": {k: v for k, v in event.items() if k not in {"start_epoch", "feedback"}},
    }
    body["text"] = summary(body)
    return body


@dataclass(slots=True)
class Entry:
    key: str
    target: str
    service: str
    generation: int
    message: dict[str, Any]
    failed_rounds: int = 0
    last_error: str | None = None

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "target": self.target,
                "service": self.service,
                "generation": self.generation,
                "message": self.message,
                "failed_rounds": self.failed_rounds,
                "last_error": self.last_error,
            }
        )


def _key(prefix: str, target: str, dedup: str) -> str:
    return f"{prefix}{target}/{hashlib.sha256(dedup.encode()).hexdigest()}.json"


class Outbox:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def put(self, target: str, service: str, generation: int, body: dict[str, Any]) -> Entry:
        entry = Entry(
            _key(OUTBOX_PREFIX, target, body["dedup_id"]), target, service, generation, body
        )
        self._write(entry)
        return entry

    def _write(self, entry: Entry) -> None:
        self.s3.put_object(
            Bucket=self.bucket, Key=entry.key, Body=entry.body(), ContentType="application/json"
        )

    def pending(self) -> list[Entry]:
        entries: list[Entry] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=OUTBOX_PREFIX):
            for item in page.get("Contents", []):
                saved = orjson.loads(
                    self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                )
                entries.append(
                    Entry(
                        item["Key"],
                        saved["target"],
                        saved["service"],
                        int(saved["generation"]),
                        saved["message"],
                        int(saved.get("failed_rounds", 0)),
                        saved.get("last_error"),
                    )
                )
        # An incident's transitions in the order they happened.
        entries.sort(key=lambda e: (e.message["event"]["start"], _ORDER[e.message["action"]]))
        return entries

    def delete(self, entry: Entry) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=entry.key)

    def failed(self, entry: Entry, error: str) -> None:
        entry.failed_rounds += 1
        entry.last_error = error[:500]
        self._write(entry)

    def dead_letter(self, entry: Entry) -> None:
        dead = Entry(
            _key(DEAD_LETTER_PREFIX, entry.target, entry.message["dedup_id"]),
            entry.target,
            entry.service,
            entry.generation,
            entry.message,
            entry.failed_rounds,
            entry.last_error,
        )
        self._write(dead)
        self.delete(entry)

    def dead_letters(self) -> int:
        response = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=DEAD_LETTER_PREFIX)
        return int(response.get("KeyCount", 0))


_ORDER = {"open": 0, "update": 1, "close": 2}

# target -> a function that delivers a batch of messages (raising on failure)
Deliver = Callable[[list[dict[str, Any]]], None]


class SqsTarget:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url

    def __call__(self, messages: list[dict[str, Any]]) -> None:
        for body in messages:
            self.sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=orjson.dumps(body).decode(),
                MessageGroupId=sqs_id(body["event"]["id"]),
                MessageDeduplicationId=sqs_id(body["dedup_id"]),
            )


class WebhookTarget:
    def __init__(self, url: str, client: httpx.Client | None = None) -> None:
        self.url = url
        self.client = client or httpx.Client(timeout=5.0)

    def __call__(self, messages: list[dict[str, Any]]) -> None:
        for body in messages:
            response = self.client.post(self.url, json={"text": body["text"]})
            if response.status_code >= 300:
                raise RuntimeError(f"webhook answered HTTP {response.status_code}")


@dataclass
class RoundResult:
    sent: int = 0
    failed: int = 0
    dead_lettered: int = 0


class Dispatcher:
    """Delivers the outbox, one target at a time (a batch per target)."""

    def __init__(
        self,
        outbox: Outbox,
        targets: dict[str, Deliver],
        attempts: int,
        dead_letter_after: int,
        on_result: Callable[[str, RoundResult], None] | None = None,
        backoff_base: float = 0.2,
        backoff_cap: float = 2.0,
    ) -> None:
        self.outbox = outbox
        self.targets = targets
        self.attempts = attempts
        self.dead_letter_after = dead_letter_after
        self.on_result = on_result
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

    def deliver(self, entries: list[Entry]) -> dict[str, RoundResult]:
        results: dict[str, RoundResult] = {}
        by_target: dict[str, list[Entry]] = {}
        for entry in entries:
            by_target.setdefault(entry.target, []).append(entry)
        for target, batch in by_target.items():
            result = results.setdefault(target, RoundResult())
            deliver = self.targets.get(target)
            if deliver is None:
                # A target switched off since (the webhook unset): its entries wait, counted.
                for entry in batch:
                    self._fail(entry, f"target {target} is not configured", result)
                continue
            self._deliver_batch(deliver, batch, result)
            if self.on_result is not None:
                self.on_result(target, result)
        return results

    def _deliver_batch(self, deliver: Deliver, batch: list[Entry], result: RoundResult) -> None:
        remaining = list(batch)
        error = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(backoff_delay(attempt - 1, base=self.backoff_base, cap=self.backoff_cap))
            while remaining:
                entry = remaining[0]
                try:
                    deliver([entry.message])
                except Exception as exc:  # any failure is retried and counted
                    error = f"{type(exc).__name__}: {exc}"
                    log.warning("alert %s to %s failed: %s", entry.key, entry.target, error)
                    break
                self.outbox.delete(entry)
                result.sent += 1
                remaining.pop(0)
            if not remaining:
                return
        for entry in remaining:
            self._fail(entry, error, result)

    def _fail(self, entry: Entry, error: str, result: RoundResult) -> None:
        self.outbox.failed(entry, error)
        result.failed += 1
        if entry.failed_rounds >= self.dead_letter_after:
            self.outbox.dead_letter(entry)
            result.dead_lettered += 1
            log.error(
                "alert %s to %s dead-lettered after %d rounds: %s",
                entry.message["dedup_id"],
                entry.target,
                entry.failed_rounds,
                error,
            )

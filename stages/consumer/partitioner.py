"""Record -> lake partition, as a pure function (no I/O, no clock).

A record lands in ``service=<svc>/year=YYYY/month=MM/day=DD/hour=HH`` by its own event time in
UTC; when the record has no usable timestamp the Kinesis arrival time is used instead. A record
that cannot be parsed, is not a JSON object, or names no service goes to the dead-letter prefix
with the reason, never into a service partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

DEAD_LETTER_PREFIX = "_dead-letter"

# Characters that would break a Hive partition path or MSCK REPAIR (/, =, :) and anything else
# outside a conservative set become "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_SERVICE_LEN = 128
# RFC 3339 in UTC with a Z suffix: the canonical form, partitioned by slicing instead of parsing.
_UTC_Z = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")


@dataclass(frozen=True, slots=True)
class Partition:
    """Where a record goes, relative to the bucket root."""

    prefix: str
    dead_letter: bool = False


@dataclass(frozen=True, slots=True)
class Routed:
    partition: Partition
    line: bytes  # one JSON object, no newline
    event_time_from_arrival: bool = False
    reason: str | None = None
    event_id: str | None = None  # what duplicates are recognised by (see dedup.py)


def sanitize_service(service: str) -> str:
    return _UNSAFE.sub("_", service.strip())[:_MAX_SERVICE_LEN]


def hour_prefix(moment: datetime) -> str:
    return f"year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour={moment:%H}"


def _event_hour(value: object) -> str | None:
    """The hour path of an RFC 3339 timestamp or epoch number, or None if unusable."""
    if isinstance(value, str):
        raw = value.encode()
        if _UTC_Z.fullmatch(raw):
            return f"year={value[0:4]}/month={value[5:7]}/day={value[8:10]}/hour={value[11:13]}"
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            # A naive timestamp is taken as UTC, the canonical record's zone.
            parsed = parsed.replace(tzinfo=UTC)
        return hour_prefix(parsed.astimezone(UTC))
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return hour_prefix(datetime.fromtimestamp(seconds, UTC))
        except (OverflowError, OSError, ValueError):
            return None
    return None


def dead_letter_partition(stream: str, arrival: datetime) -> Partition:
    return Partition(
        f"{DEAD_LETTER_PREFIX}/stream={stream}/{hour_prefix(arrival.astimezone(UTC))}",
        dead_letter=True,
    )


def route(data: bytes, arrival: datetime, stream: str) -> Routed:
    """Decide the partition of one user record (after KPL deaggregation)."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return _dead(stream, arrival, f"not valid JSON: {exc}")
    if not isinstance(record, dict):
        return _dead(stream, arrival, f"not a JSON object but a {type(record).__name__}")
    service = record.get("service")
    if not isinstance(service, str) or not service.strip():
        return _dead(stream, arrival, "missing or empty 'service' field")
    safe_service = sanitize_service(service)
    hour = _event_hour(record.get("timestamp"))
    from_arrival = hour is None
    if hour is None:
        hour = hour_prefix(arrival.astimezone(UTC))
    # Keep the producer's bytes when they are already one line; re-encode only when needed.
    line = data.strip()
    if b"\n" in line or b"\r" in line:
        line = orjson.dumps(record)
    event_id = record.get("event_id")
    return Routed(
        Partition(f"service={safe_service}/{hour}"),
        line,
        from_arrival,
        event_id=event_id if isinstance(event_id, str) and event_id else None,
    )


def _dead(stream: str, arrival: datetime, reason: str) -> Routed:
    return Routed(dead_letter_partition(stream, arrival), b"", reason=reason)

"""Record -> lake partition, as a pure function (no I/O, no clock).

A record lands in ``service=<svc>/year=YYYY/month=MM/day=DD/hour=HH`` by its own event time in
UTC; when the record has no usable timestamp the Kinesis arrival time is used instead. A record
that cannot be parsed, is not a JSON object, or names no service goes to the dead-letter prefix
with the reason, never into a service partition.

``route`` is total: whatever bytes it is given, it returns a partition whose every field is valid
(year 0001-9999, month 01-12, a day of that month, hour 00-23, a sanitised service) or a dead
letter with a reason. A timestamp is usable only if it names a real instant whose UTC hour lies
in years 0001-9999; anything else (month 13, hour 25, 30 February, an offset that moves it out of
that range, a number too large for a date, neither a string nor a number, a string longer than
64 characters) falls back to the arrival time, counted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

import orjson

from stages.common import lake

# Characters that would break a Hive partition path or MSCK REPAIR (/, =, :) and anything else
# outside a conservative set become "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_SERVICE_LEN = 128
# RFC 3339 in UTC with a Z suffix: the canonical form, partitioned from its fields without
# building a datetime (the common case on the hot path).
_UTC_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z", re.ASCII)
# Any RFC 3339 date-time (offset or Z, T or space, leap second allowed): checked field by field
# because datetime.fromisoformat refuses second 60 and cannot report which field is wrong.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


# Named tuples rather than frozen dataclasses: one of each per record, and a tuple is built and
# hashed (Partition is a dict key of the batcher) in C, several times faster.
class Partition(NamedTuple):
    """Where a record goes, relative to the bucket root."""

    prefix: str
    dead_letter: bool = False


class Routed(NamedTuple):
    partition: Partition
    line: bytes  # one JSON object, no newline
    event_time_from_arrival: bool = False
    reason: str | None = None
    event_id: str | None = None  # what duplicates are recognised by (see dedup.py)


# (service as the record gives it, hour path) -> its Partition: the records of a shard fall in a
# few services and hours, so the sanitising and formatting are done once per pair. Cleared when
# full, so hostile input with a new service per record costs memory only up to the bound.
_PARTITIONS: dict[tuple[str, str], Partition] = {}
_PARTITIONS_MAX = 4096


def _service_partition(service: str, hour: str) -> Partition:
    key = (service, hour)
    partition = _PARTITIONS.get(key)
    if partition is None:
        if len(_PARTITIONS) >= _PARTITIONS_MAX:
            _PARTITIONS.clear()
        partition = _PARTITIONS[key] = Partition(
            lake.service_partition(sanitize_service(service), hour)
        )
    return partition


def sanitize_service(service: str) -> str:
    return _UNSAFE.sub("_", service.strip())[:_MAX_SERVICE_LEN]


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def _valid_fields(year: int, month: int, day: int, hour: int, minute: int, second: int) -> bool:
    # second 60 is a leap second (RFC 3339 allows it); it belongs to the same hour.
    return (
        1 <= year <= 9999
        and 1 <= month <= 12
        and 1 <= day <= _days_in_month(year, month)
        and hour <= 23
        and minute <= 59
        and second <= 60
    )


def _event_hour(value: object) -> str | None:
    """The hour path of an RFC 3339 timestamp or epoch number, or None if unusable."""
    try:
        return _event_hour_unchecked(value)
    except Exception:
        # Whatever a producer puts in the field (the datetime functions raise ValueError,
        # OverflowError or OSError at the edges of their range), it means "no usable timestamp".
        return None


def _event_hour_unchecked(value: object) -> str | None:
    if isinstance(value, str):
        if len(value) > 64:
            return None
        if _UTC_Z.fullmatch(value):
            return _utc_z_hour(value)
        match = _RFC3339.fullmatch(value)
        if match:
            return _offset_hour(match)
        if not value[:4].isdigit():
            return None
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            # A naive timestamp is taken as UTC, the canonical record's zone.
            return lake.hour_of(parsed)
        return lake.hour_of(parsed.astimezone(UTC))
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return lake.hour_of(datetime.fromtimestamp(seconds, UTC))
    return None


def _utc_z_hour(value: str) -> str | None:
    # Two ASCII digits compare as strings in numeric order: range checks without int().
    year, month, day, hour = value[0:4], value[5:7], value[8:10], value[11:13]
    if not (
        "01" <= month <= "12"
        and day >= "01"
        and hour <= "23"
        and value[14:16] <= "59"
        and value[17:19] <= "60"  # 60: a leap second, in the same hour
        and year != "0000"
    ):
        return None
    if day > "28" and int(day) > _days_in_month(int(year), int(month)):
        return None
    return lake.hour_path_of_digits(year, month, day, hour)


def _offset_hour(match: re.Match[str]) -> str | None:
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not _valid_fields(year, month, day, hour, minute, second):
        return None
    if match.group(7):
        return lake.hour_path(year, month, day, hour)
    offset_hours, offset_minutes = int(match.group(9)), int(match.group(10))
    if offset_hours > 23 or offset_minutes > 59:
        return None
    offset = timedelta(hours=offset_hours, minutes=offset_minutes)
    if match.group(8) == "-":
        offset = -offset
    local = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone(offset))
    # Raises OverflowError when the offset moves the instant out of years 1-9999.
    return lake.hour_of(local.astimezone(UTC))


def dead_letter_partition(stream: str, arrival: datetime) -> Partition:
    return Partition(
        lake.dead_letter_partition(stream, lake.hour_of(arrival.astimezone(UTC))),
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
    hour = _event_hour(record.get("timestamp"))
    from_arrival = hour is None
    if hour is None:
        hour = lake.hour_of(arrival.astimezone(UTC))
    # Keep the producer's bytes when they are already one line; re-encode only when needed.
    line = data.strip()
    if b"\n" in line or b"\r" in line:
        line = orjson.dumps(record)
    event_id = record.get("event_id")
    return Routed(
        _service_partition(service, hour),
        line,
        from_arrival,
        event_id=event_id if isinstance(event_id, str) and event_id else None,
    )


def _dead(stream: str, arrival: datetime, reason: str) -> Routed:
    return Routed(dead_letter_partition(stream, arrival), b"", reason=reason)

"""The log viewer's read: the first N lines of an object, fetched with ranged GETs.

Only a prefix of the object is ever read: the first range is small and each next one continues
where the last ended (twice as long), until N whole lines are there, the object ends, or the
byte bound is reached. A ``.gz`` object is decompressed as a stream, so only the compressed
bytes needed for N lines are fetched, and never more than a set number of bytes come out of it
(a gzip bomb stops at that bound and the excerpt says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import ClientError

from stages.common.errors import NotFound
from stages.common.lake import Inflater, is_gzip
from stages.dashboard.metrics import S3_BYTES_INFLATED, S3_BYTES_READ

FIRST_RANGE_BYTES = 16 * 1024
MAX_RANGE_BYTES = 4 * 1024 * 1024


@dataclass
class Excerpt:
    """The first lines of an object and what it cost to read them."""

    lines: list[bytes] = field(default_factory=list)
    bytes_read: int = 0
    requests: int = 0
    object_size: int | None = None
    complete: bool = False  # the whole object was read
    truncated: bool = False  # stopped at a bound before N lines
    reason: str | None = None  # which bound, when truncated
    inflated: int = 0  # decompressed bytes of a .gz object


def read_first_lines(
    s3: Any, bucket: str, key: str, lines: int, max_bytes: int, *, max_inflated: int
) -> Excerpt:
    """At most ``max_bytes`` are fetched and, for a ``.gz`` object, at most ``max_inflated``
    decompressed: a bound reached before N lines makes the excerpt ``truncated``."""
    excerpt = Excerpt()
    inflater = Inflater(key, max_inflated) if is_gzip(key) else None
    # Only the last, unfinished line is kept between pieces: a long line costs its own length
    # once, never a copy per piece.
    pending = bytearray()
    for chunk in _ranges(s3, bucket, key, excerpt, max_bytes):
        for piece in inflater.feed(chunk) if inflater is not None else (chunk,):
            pending += piece
            if b"\n" not in piece:
                continue
            cut = pending.rfind(b"\n")
            excerpt.lines.extend(bytes(pending[:cut]).split(b"\n"))
            del pending[: cut + 1]
            if len(excerpt.lines) >= lines:
                del excerpt.lines[lines:]
                _note_inflated(excerpt, inflater)
                return excerpt
        if inflater is not None and inflater.capped:
            _note_inflated(excerpt, inflater)
            excerpt.complete = False
            excerpt.truncated = True
            excerpt.reason = (
                f"stopped after {inflater.inflated} decompressed bytes "
                "(DASHBOARD_MAX_DECOMPRESSED_BYTES)"
            )
            return excerpt
    _note_inflated(excerpt, inflater)
    if excerpt.complete:
        if inflater is not None:
            inflater.finish()
        if pending:
            excerpt.lines.append(bytes(pending))
        del excerpt.lines[lines:]
    else:
        excerpt.truncated = True
        excerpt.reason = f"stopped after {excerpt.bytes_read} bytes (DASHBOARD_VIEWER_MAX_BYTES)"
    return excerpt


def _note_inflated(excerpt: Excerpt, inflater: Inflater | None) -> None:
    if inflater is not None:
        excerpt.inflated = inflater.inflated
        S3_BYTES_INFLATED.labels("viewer").inc(inflater.inflated)


def _ranges(s3: Any, bucket: str, key: str, excerpt: Excerpt, max_bytes: int) -> Iterator[bytes]:
    start, length = 0, FIRST_RANGE_BYTES
    while start < max_bytes:
        end = min(start + length, max_bytes) - 1
        try:
            response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404"}:
                raise NotFound(f"no object {key!r} in bucket {bucket!r}") from exc
            if code == "InvalidRange":  # an empty object has no byte 0
                excerpt.object_size, excerpt.complete = 0, True
                return
            raise
        body = response["Body"].read()
        excerpt.requests += 1
        excerpt.bytes_read += len(body)
        S3_BYTES_READ.labels("viewer").inc(len(body))
        excerpt.object_size = _total_size(response, start + len(body))
        start += len(body)
        if start >= excerpt.object_size or not body:
            excerpt.complete = True
            yield body
            return
        yield body
        length = min(length * 2, MAX_RANGE_BYTES)


def _total_size(response: dict[str, Any], fallback: int) -> int:
    # Content-Range: bytes 0-16383/5242880
    content_range = response.get("ContentRange") or ""
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else fallback


def parse_line(number: int, line: bytes) -> dict[str, Any]:
    """One viewer entry: the record when the line is a JSON object, else the raw text."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return {
            "line": number,
            "record": None,
            "raw": line.decode("utf-8", errors="replace")[:4096],
            "anomalous": False,
        }
    return {"line": number, "record": record, "raw": None, "anomalous": is_anomalous(record)}


def is_anomalous(record: dict[str, Any]) -> bool:
    """The record's own ground-truth label (``is_anomaly`` of the canonical record)."""
    return record.get("is_anomaly") is True

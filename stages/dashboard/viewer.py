"""The log viewer's read: the first N lines of an object, fetched with ranged GETs.

Only a prefix of the object is ever read: the first range is small and each next one continues
where the last ended (twice as long), until N whole lines are there, the object ends, or the
byte bound is reached. A ``.gz`` object is decompressed as a stream, so only the compressed
bytes needed for N lines are fetched.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import ClientError

from stages.common.errors import NotFound, Unprocessable
from stages.dashboard.metrics import S3_BYTES_READ

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
    truncated: bool = False  # stopped at the byte bound before N lines


def read_first_lines(s3: Any, bucket: str, key: str, lines: int, max_bytes: int) -> Excerpt:
    excerpt = Excerpt()
    decompressor = zlib.decompressobj(wbits=31) if key.endswith(".gz") else None
    pending = b""
    for chunk in _ranges(s3, bucket, key, excerpt, max_bytes):
        if decompressor is not None:
            chunk = _inflate(decompressor, chunk, key)
        pending += chunk
        *whole, pending = pending.split(b"\n")
        excerpt.lines.extend(whole)
        if len(excerpt.lines) >= lines:
            del excerpt.lines[lines:]
            return excerpt
    if excerpt.complete:
        if decompressor is not None:
            pending += _finish(decompressor, key)
        if pending:
            excerpt.lines.append(pending)
        del excerpt.lines[lines:]
    else:
        excerpt.truncated = True
    return excerpt


def _inflate(decompressor: Any, chunk: bytes, key: str) -> bytes:
    try:
        return decompressor.decompress(chunk)
    except zlib.error as exc:
        raise Unprocessable(f"object {key!r} is not valid gzip: {exc}") from exc


def _finish(decompressor: Any, key: str) -> bytes:
    if not decompressor.eof:
        raise Unprocessable(f"object {key!r} is a truncated gzip stream")
    return decompressor.flush()


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

"""The lake's layout and how to read it: partition paths, object keys, listing, object lines.

A record lives under ``service=<svc>/year=YYYY/month=MM/day=DD/hour=HH/`` (its own service and
UTC hour); a record the consumer could not place lives under
``_dead-letter/stream=<stream>/year=YYYY/month=MM/day=DD/hour=HH/``. Keys that start with ``_``
are not records of the lake (Hive and Athena skip such paths too).

An object's name is derived only from what it holds: stream, shard, the first and last Kinesis
sequence numbers of its records, and the encoding (``.jsonl`` or ``.jsonl.gz``). A consumer that
flushes the same shard range again after a crash therefore writes the same keys, which is what
its exactly-once delivery rests on: the format here must not change.

Anyone who can write to a lake bucket can plant a gzip bomb (a gigabyte of zeros is about a
megabyte compressed), so objects are never inflated without a limit: output comes in pieces of
at most ``PIECE_BYTES``, and once the limit is reached the reader stops and says so.
Concatenated gzip members (RFC 1952 allows them) are followed.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stages.common.errors import Unprocessable

DEAD_LETTER_PREFIX = "_dead-letter"
PLAIN_SUFFIX = ".jsonl"
GZIP_SUFFIX = ".jsonl.gz"
# Kinesis sequence numbers are zero-padded to this many digits so keys sort in stream order.
SEQUENCE_DIGITS = 56
PIECE_BYTES = 1024 * 1024
# What a reader that wants whole objects (checks, benchmarks, tests) inflates at most per object.
DEFAULT_MAX_INFLATED = 1024 * 1024 * 1024
_GZIP = 31  # zlib's wbits for a gzip header and trailer

# service=<svc>/year=YYYY/month=MM/day=DD/hour=HH/ at the start of a key
_SERVICE_HOUR = re.compile(
    r"^service=(?P<service>[^/]+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/"
    r"day=(?P<day>\d{2})/hour=(?P<hour>\d{2})/"
)
# Kinesis shard ids are "shardId-" and digits; stream names may hold "-", so the name is parsed
# from the right.
_OBJECT_NAME = re.compile(
    r"^part-(?P<stream>.+)-(?P<shard_id>shardId-\d+)-(?P<first>\d{56,})-(?P<last>\d{56,})"
    r"(?P<suffix>\.jsonl(?:\.gz)?)$"
)


# --- partition paths ----------------------------------------------------------------------------
def hour_path(year: int, month: int, day: int, hour: int) -> str:
    """``year=YYYY/month=MM/day=DD/hour=HH``; fields formatted by hand because strftime's %Y does
    not zero-pad years before 1000."""
    return f"year={year:04d}/month={month:02d}/day={day:02d}/hour={hour:02d}"


def hour_path_of_digits(year: str, month: str, day: str, hour: str) -> str:
    """``hour_path`` of fields that are already zero-padded digits (the partitioner's fast path,
    which never builds a datetime)."""
    return f"year={year}/month={month}/day={day}/hour={hour}"


def hour_of(moment: datetime) -> str:
    """The hour path of ``moment`` as given (convert it to UTC first)."""
    return hour_path(moment.year, moment.month, moment.day, moment.hour)


def service_partition(service: str, hour: str) -> str:
    """``service=<svc>/<hour path>``, no trailing slash; ``service`` must already be safe."""
    return f"service={service}/{hour}"


def dead_letter_partition(stream: str, hour: str) -> str:
    return f"{DEAD_LETTER_PREFIX}/stream={stream}/{hour}"


def prefix(partition: str) -> str:
    """The listing prefix of a partition: exactly its objects, not those of ``hour=1`` of a
    partition whose name only starts the same way."""
    return partition if partition.endswith("/") else f"{partition}/"


def is_hidden(key: str) -> bool:
    """A key outside the record partitions (dead letters, anything starting with ``_``)."""
    return key.startswith("_")


def is_gzip(key: str) -> bool:
    return key.endswith(".gz")


@dataclass(frozen=True, slots=True)
class ServiceHour:
    service: str
    year: str
    month: str
    day: str
    hour: str


def parse_service_hour(key: str) -> ServiceHour | None:
    """The service partition a key lies in, or None for any other key."""
    match = _SERVICE_HOUR.match(key)
    if match is None:
        return None
    return ServiceHour(match["service"], match["year"], match["month"], match["day"], match["hour"])


# --- object keys --------------------------------------------------------------------------------
def suffix(compression: str) -> str:
    return GZIP_SUFFIX if compression == "gzip" else PLAIN_SUFFIX


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """What a consumer-written key says. Sequence numbers are held without the padding."""

    partition: str  # no trailing slash
    stream: str
    shard_id: str
    first_sequence: str
    last_sequence: str
    compression: str  # "gzip" or "none"

    def __str__(self) -> str:
        return object_key(
            self.partition,
            self.stream,
            self.shard_id,
            self.first_sequence,
            self.last_sequence,
            self.compression,
        )

    @property
    def dead_letter(self) -> bool:
        return self.partition.startswith(f"{DEAD_LETTER_PREFIX}/")


def object_key(
    partition: str, stream: str, shard_id: str, first: str, last: str, compression: str
) -> str:
    first = first.zfill(SEQUENCE_DIGITS)
    last = last.zfill(SEQUENCE_DIGITS)
    return f"{partition}/part-{stream}-{shard_id}-{first}-{last}{suffix(compression)}"


def parse_key(key: str) -> ObjectKey:
    """The parts of a consumer-written key; ValueError for any other key."""
    partition, _, name = key.rpartition("/")
    match = _OBJECT_NAME.match(name)
    if not partition or match is None:
        raise ValueError(f"{key!r} is not a consumer-written lake key")
    return ObjectKey(
        partition=partition,
        stream=match["stream"],
        shard_id=match["shard_id"],
        first_sequence=match["first"].lstrip("0") or "0",
        last_sequence=match["last"].lstrip("0") or "0",
        compression="gzip" if match["suffix"] == GZIP_SUFFIX else "none",
    )


# --- listing ------------------------------------------------------------------------------------
class ListingStopped(Exception):
    """``before_call`` refused the next ListObjectsV2 call."""


def list_pages(
    s3: Any,
    bucket: str,
    key_prefix: str = "",
    *,
    before_call: Callable[[], bool] | None = None,
    **params: Any,
) -> Iterator[dict[str, Any]]:
    """Every page of ListObjectsV2 under ``key_prefix`` (a bucket is never "1,000 objects").

    ``before_call`` runs before each call; when it returns False the listing raises
    ``ListingStopped`` instead of making the call. ``params`` go to every call (Delimiter, ...).
    """
    kwargs: dict[str, Any] = {"Bucket": bucket, **params}
    if key_prefix:
        kwargs["Prefix"] = key_prefix
    while True:
        if before_call is not None and not before_call():
            raise ListingStopped(f"listing of {bucket}/{key_prefix} stopped")
        page = s3.list_objects_v2(**kwargs)
        yield page
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        kwargs["ContinuationToken"] = token


def list_objects(s3: Any, bucket: str, key_prefix: str = "") -> Iterator[dict[str, Any]]:
    """Every object entry (Key, Size, ETag, LastModified) under ``key_prefix``."""
    for page in list_pages(s3, bucket, key_prefix):
        yield from page.get("Contents", [])


# --- reading ------------------------------------------------------------------------------------
class Inflater:
    """One gzip stream, fed compressed chunks in order; at most ``limit`` bytes come out."""

    def __init__(self, key: str, limit: int) -> None:
        self.key = key
        self.limit = limit
        self.inflated = 0
        self.capped = False  # stopped at the limit before the stream ended
        self._member = zlib.decompressobj(wbits=_GZIP)
        self._in_member = False  # bytes of the current member were fed and it has not ended

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed pieces of ``data``; stops (``capped``) at the limit."""
        while data and not self.capped:
            room = self.limit - self.inflated
            if room <= 0:
                self.capped = True
                return
            try:
                piece = self._member.decompress(data, min(room, PIECE_BYTES))
            except zlib.error as exc:
                raise Unprocessable(f"object {self.key!r} is not valid gzip: {exc}") from exc
            self._in_member = True
            self.inflated += len(piece)
            data = self._member.unconsumed_tail
            if self._member.eof:
                data = self._member.unused_data + data
                self._member = zlib.decompressobj(wbits=_GZIP)
                self._in_member = False
            if piece:
                yield piece

    def finish(self) -> None:
        """At the end of the compressed input: the last member must be complete."""
        if self._in_member and not self.capped:
            raise Unprocessable(f"object {self.key!r} is a truncated gzip stream")


@dataclass
class ObjectLines:
    """The lines of one object (without their newlines) and what reading them took."""

    key: str
    lines: list[bytes] = field(default_factory=list)
    stored_bytes: int = 0  # bytes fetched from S3
    content_bytes: int = 0  # bytes of JSONL (decompressed for a .gz object)
    ends_with_newline: bool = False
    truncated: bool = False  # stopped at the cap: ``lines`` holds only the whole lines before it

    def require_complete(self) -> ObjectLines:
        if self.truncated:
            raise Unprocessable(
                f"object {self.key!r} holds more than {self.content_bytes} bytes of lines, "
                "more than this reader may read"
            )
        return self


def read_lines(
    s3: Any, bucket: str, key: str, *, max_bytes: int = DEFAULT_MAX_INFLATED
) -> ObjectLines:
    """The lines of a plain or gzip object, at most ``max_bytes`` of them (decompressed).

    The body is fetched in pieces of ``PIECE_BYTES``, never whole. A gzip object that is not
    valid gzip or ends mid-stream raises ``Unprocessable``; reaching ``max_bytes`` sets
    ``truncated``.
    """
    result = ObjectLines(key)
    inflater = Inflater(key, max_bytes) if is_gzip(key) else None
    pending = bytearray()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        while chunk := body.read(PIECE_BYTES):
            result.stored_bytes += len(chunk)
            if inflater is not None:
                pieces: Iterator[bytes] = inflater.feed(chunk)
            else:
                room = max_bytes - result.content_bytes
                pieces = iter((chunk[:room],)) if room > 0 else iter(())
                result.truncated = len(chunk) > room
            for piece in pieces:
                result.content_bytes += len(piece)
                pending += piece
                cut = pending.rfind(b"\n")
                if cut >= 0:
                    result.lines.extend(bytes(pending[:cut]).split(b"\n"))
                    del pending[: cut + 1]
            if inflater is not None and inflater.capped:
                result.truncated = True
            if result.truncated:
                return result
        if inflater is not None:
            inflater.finish()
    finally:
        body.close()
    if pending:
        result.lines.append(bytes(pending))
    # An empty object does not end with a newline either: the lake never holds one.
    result.ends_with_newline = result.content_bytes > 0 and not pending
    return result

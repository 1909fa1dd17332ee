"""Corrections to moto's Kinesis model so the embedded emulator behaves like Kinesis where our
guarantees depend on it. Applied once, in the emulator process only.

- ``Shard.put_record`` is documented by moto as not safe for concurrency: two threads of the
  threaded server can draw the same sequence number and one record silently replaces the other.
  We serialise writes per stream.
- Finding the last sequence number built a list of every key (O(n) per put), and GetRecords
  scanned the shard from its first record on every call; both made the emulator quadratic in the
  number of records. Sequence numbers in moto are consecutive integers, so both become lookups.
- GetRecords returned everything up to ``Limit`` however large; Kinesis stops at 10 MiB per call,
  and consumers size their memory by that.
- After ``SplitShard`` moto re-puts the parent's records and keeps routing new records by hash
  range over *all* shards, so they land in the closed parent again. Real Kinesis keeps the
  parent's records in the parent and routes new records to the open children only.

And so that the emulator's memory does not grow with the data that passes through it:

- moto kept every record's data in memory, base64-encoded (a third larger than the data); a
  benchmark run left the emulator at ~2 GB. The data now goes to unlinked temporary files, a new
  one per shard every 64 MiB (the kernel frees them when the process exits, even on SIGKILL), and
  is read back with ``pread``; memory holds a small entry per Kinesis record, which carries a
  whole aggregate.
- moto never expired records. Records older than the stream's retention period (24 h unless
  changed) are now dropped as Kinesis drops them, and a file is freed once all its records are.
  Sequence numbers keep counting up across it, as in Kinesis.
- moto kept every S3 object body in memory up to 5 MiB (``SpooledTemporaryFile``), and one that
  grew past that kept its own temporary file open: thousands of objects would run the process
  out of file descriptors. Bodies above a threshold now go to one shared unlinked file as well.
- moto put a fresh request id into every response body with a look-behind regular expression
  over the whole body, XML or not: on GetRecords answers of megabytes that was a fifth of the
  emulator's CPU. It now runs only on bodies that contain ``<RequestId>``.
- moto lists its own package directory (a ``listdir`` and ~200 ``isdir`` calls) on every
  request to find the backend for the Host header, ~8 % of the emulator's CPU; the list is
  computed once.
- moto's ``BaseModel`` appends every instance it ever creates to a class-level list, for its
  ``/moto-api/data.json`` dashboard: every record, every overwritten S3 object and every
  DynamoDB item version stayed reachable forever. Instances are no longer tracked.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from base64 import b64decode, b64encode
from collections import deque
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from moto import backends as moto_backends
from moto.core import common_models
from moto.core.responses import BaseResponse
from moto.core.utils import unix_time, utcnow
from moto.kinesis import models
from moto.s3 import models as s3_models
from moto.utilities.aws_headers import gen_amzn_requestid_long

_write_lock = threading.RLock()
_MAX_GET_BYTES = 10 * 1024 * 1024
# A shard's record data goes to a new file every this many bytes, so that what the retention
# period expires is freed a file at a time.
_SEGMENT_BYTES = 64 * 1024 * 1024
_applied = False


class _AppendOnlyFile:
    """Append-only storage in an already unlinked file; what is written is never moved."""

    def __init__(self) -> None:
        # Open for the shard's lifetime, as the shard's records are.
        self._file = tempfile.TemporaryFile(prefix="emulator-", buffering=0)  # noqa: SIM115
        self._fd = self._file.fileno()
        self._end = 0
        self._lock = threading.Lock()

    def append(self, data: bytes) -> int:
        """Write ``data`` at the end and return its offset."""
        with self._lock:
            offset = self._end
            self._end += len(data)
        view = memoryview(data)
        position = offset
        while view:
            # A full disk raises here: moto answers 500 and the caller retries (or spools).
            written = os.pwrite(self._fd, view, position)
            position += written
            view = view[written:]
        return offset

    @property
    def size(self) -> int:
        return self._end

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)


class _ShardLog:
    """One shard's record data, in files of up to ``_SEGMENT_BYTES``; the newest is written to.

    A file is never closed here: records refer to their file, and CPython closes it when the
    last of them is gone, so a GetRecords answer being built while its records expire still
    reads them (and no file descriptor number is reused under it).
    """

    def __init__(self) -> None:
        self._segments: deque[tuple[_AppendOnlyFile, int]] = deque()  # (file, last sequence)

    def append(self, data: bytes, sequence: int) -> tuple[_AppendOnlyFile, int]:
        if not self._segments or self._segments[-1][0].size >= _SEGMENT_BYTES:
            self._segments.append((_AppendOnlyFile(), sequence))
        storage = self._segments[-1][0]
        offset = storage.append(data)
        self._segments[-1] = (storage, sequence)
        return storage, offset

    def release_before(self, first_live_sequence: int) -> None:
        """Let go of the files whose records have all expired (never the one written to)."""
        while len(self._segments) > 1 and self._segments[0][1] < first_live_sequence:
            self._segments.popleft()

    def files(self) -> int:
        return len(self._segments)


class _DiskRecord:
    """A Kinesis record whose data lives in its shard's file; moto's attributes otherwise.

    Not a moto ``Record``: that one carries a ``__dict__`` and a ``datetime`` each, ~400 bytes
    for every Kinesis record the emulator holds; moto only reads these attributes and
    ``to_json``.
    """

    __slots__ = (
        "_offset",
        "_storage",
        "created_at",
        "explicit_hash_key",
        "partition_key",
        "sequence_number",
        "size",
    )

    def __init__(
        self,
        log: _ShardLog,
        partition_key: str,
        data: bytes,
        sequence_number: int,
        explicit_hash_key: str,
    ) -> None:
        self.partition_key = partition_key
        self.sequence_number = sequence_number
        self.explicit_hash_key = explicit_hash_key
        self.created_at = unix_time(utcnow())
        self.size = len(data)
        self._storage, self._offset = log.append(data, sequence_number)

    @property
    def created_at_datetime(self) -> datetime:
        # Naive UTC, as moto's utcnow() gives it.
        return datetime.fromtimestamp(self.created_at, UTC).replace(tzinfo=None)

    @property
    def raw_data(self) -> bytes:
        return self._storage.read(self._offset, self.size)

    @property
    def data(self) -> str:  # type: ignore[override]
        # moto's own paths (MergeShards re-puts records) expect the base64 text.
        return b64encode(self.raw_data).decode("ascii")

    def to_json(self) -> dict[str, Any]:
        return {
            "Data": self.raw_data,
            "PartitionKey": self.partition_key,
            "SequenceNumber": str(self.sequence_number),
            "ApproximateArrivalTimestamp": self.created_at_datetime,
        }


class _ObjectBody:
    """What moto's ``FakeKey`` keeps its body in, instead of a ``SpooledTemporaryFile``.

    moto sets a body with ``seek(0); truncate(); write(value)`` and reads it with ``seek`` and
    ``read``. A body written whole and larger than the threshold goes to the shared file and
    holds only its offset; anything else stays in memory.
    """

    def __init__(self, store: _AppendOnlyFile, threshold: int) -> None:
        self._store = store
        self._threshold = threshold
        self._memory = bytearray()
        self._on_disk: tuple[int, int] | None = None  # (offset, size)
        self._position = 0

    def _content(self) -> bytes | bytearray:
        if self._on_disk is not None:
            offset, size = self._on_disk
            return self._store.read(offset, size)
        return self._memory

    def _to_memory(self) -> None:
        if self._on_disk is not None:
            self._memory = bytearray(self._content())
            self._on_disk = None

    def seek(self, position: int, whence: int = 0) -> int:
        if whence == 1:
            position += self._position
        elif whence == 2:
            position += self._on_disk[1] if self._on_disk else len(self._memory)
        self._position = position
        return position

    def tell(self) -> int:
        return self._position

    def truncate(self, size: int | None = None) -> int:
        size = self._position if size is None else size
        if size == 0:
            self._memory = bytearray()
            self._on_disk = None
        else:
            self._to_memory()
            del self._memory[size:]
        return size

    def write(self, data: bytes) -> int:
        whole = self._position == 0 and self._on_disk is None and not self._memory
        if whole and len(data) > self._threshold:
            self._on_disk = (self._store.append(data), len(data))
        else:
            self._to_memory()
            self._memory[self._position : self._position + len(data)] = data
        self._position += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        content = self._content()
        end = len(content) if size is None or size < 0 else self._position + size
        chunk = bytes(content[self._position : end])
        self._position += len(chunk)
        return chunk

    def close(self) -> None:
        self._memory = bytearray()
        self._on_disk = None


def _keep_object_bodies_in(store: _AppendOnlyFile, threshold: int) -> None:
    def make_body(*_args: Any, **_kwargs: Any) -> _ObjectBody:
        return _ObjectBody(store, threshold)

    # moto.s3.models uses the tempfile module for exactly this and nothing else.
    s3_models.tempfile = SimpleNamespace(SpooledTemporaryFile=make_body)  # type: ignore[assignment]


def _log_of(shard: models.Shard) -> _ShardLog:
    log = getattr(shard, "_disk_log", None)
    if log is None:
        log = shard._disk_log = _ShardLog()  # type: ignore[attr-defined]
    return log


# The newest sequence number ever given out, kept apart from the records: once the oldest have
# expired (or all of them), numbering goes on from there, never from the records left.
def _max_sequence_number(self: models.Shard) -> int:
    with _write_lock:
        last = getattr(self, "_last_sequence", None)
        if last is None:
            # Both ends are read under the write lock: a put between ``reversed()`` and
            # ``next()`` would make the dict iterator raise "changed size during iteration".
            last = next(reversed(self.records)) if self.records else 0
        return last


def _min_sequence_number(self: models.Shard) -> int:
    with _write_lock:
        return next(iter(self.records)) if self.records else 0


def _put_record(self: models.Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    raw = b64decode(data)
    with _write_lock:
        sequence_number = _max_sequence_number(self) + 1
        self.records[sequence_number] = _DiskRecord(
            _log_of(self), partition_key, raw, sequence_number, explicit_hash_key
        )
        self._last_sequence = sequence_number  # type: ignore[attr-defined]
    return str(sequence_number)


def expire_records(shard: models.Shard, retention_seconds: float, now: float) -> int:
    """Drop the records older than the retention period; returns how many."""
    cutoff = now - retention_seconds
    expired = 0
    with _write_lock:
        records = shard.records
        while records:
            first = next(iter(records))
            if records[first].created_at >= cutoff:
                break
            del records[first]
            expired += 1
        if expired:
            first_live = next(iter(records)) if records else _max_sequence_number(shard) + 1
            _log_of(shard).release_before(first_live)
    return expired


_original_stream_put = models.Stream.put_record


def _stream_put_record(
    self: models.Stream, partition_key: str, explicit_hash_key: str, data: str
) -> tuple[str, str]:
    sequence_number, shard_id = _original_stream_put(self, partition_key, explicit_hash_key, data)
    # Checking costs one look at the shard's oldest record; a shard nobody writes to does not
    # grow, so expiring on the write path is enough.
    expire_records(self.shards[shard_id], self.retention_period_hours * 3600, time.time())
    return sequence_number, shard_id


def _get_records(
    self: models.Shard, last_sequence_id: str, limit: int | None
) -> tuple[list[models.Record | _DiskRecord], int, int]:
    position = int(last_sequence_id)
    newest = _max_sequence_number(self)
    results: list[models.Record | _DiskRecord] = []
    size = 0
    # With every record expired there is nothing before the next one to be written.
    first_live = _min_sequence_number(self) if self.records else newest + 1
    seq = max(position + 1, first_live)
    while seq <= newest and (limit is None or len(results) < limit) and size < _MAX_GET_BYTES:
        record = self.records.get(seq)
        if record is not None:
            results.append(record)
            size += _data_size(record) + len(record.partition_key)
            position = seq
        seq += 1
    millis_behind = 0
    latest = self.records.get(newest)
    if results and latest is not None:
        millis_behind = int((latest.created_at - results[-1].created_at) * 1000)
    return results, position, millis_behind


def _data_size(record: models.Record | _DiskRecord) -> int:
    if isinstance(record, _DiskRecord):
        return record.size
    # moto keeps the data base64-encoded: 3 bytes for every 4 characters.
    return len(record.data) * 3 // 4


def _get_shard_for_key(
    self: models.Stream, partition_key: str, explicit_hash_key: str | None
) -> models.Shard | None:
    if explicit_hash_key:
        int_key = int(explicit_hash_key)
        if int_key >= 2**128:
            raise models.InvalidArgumentError("explicit_hash_key")
    else:
        int_key = int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        # Hash ranges are inclusive at both ends, as ListShards reports them.
        if shard.is_open and shard.starting_hash <= int_key <= shard.ending_hash:
            return shard
    return None


_original_split = models.Stream.split_shard


def _split_shard(self: models.Stream, shard_to_split: str, new_starting_hash_key: str) -> None:
    with _write_lock:
        parent = self.shards.get(shard_to_split)
        kept: Any = parent.records if parent is not None else None
        if parent is not None:
            parent.records = {}
        try:
            _original_split(self, shard_to_split, new_starting_hash_key)
        finally:
            if parent is not None:
                parent.records = kept


_original_enrich = BaseResponse._enrich_response


def _enrich_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
    marker: str | bytes = b"<RequestId>" if isinstance(body, bytes) else "<RequestId>"
    if isinstance(body, str | bytes) and marker in body:
        return _original_enrich(headers, body)
    # moto's own steps, without the search of a body that has no request id to replace.
    if "status" in headers:
        headers["status"] = str(headers["status"])
    gen_amzn_requestid_long(headers)
    return headers, body


_MOTO_MODULES = tuple(moto_backends.list_of_moto_modules())


def _moto_modules() -> tuple[str, ...]:
    return _MOTO_MODULES


def _new_untracked(cls: type, *args: Any, **kwargs: Any) -> Any:
    return object.__new__(cls)


def apply(s3_memory_object_bytes: int) -> None:
    global _applied
    if _applied:
        return
    _keep_object_bodies_in(_AppendOnlyFile(), s3_memory_object_bytes)
    common_models.BaseModel.__new__ = staticmethod(_new_untracked)  # type: ignore[method-assign]
    models.Shard.put_record = _put_record
    models.Shard.get_max_sequence_number = _max_sequence_number
    models.Shard.get_min_sequence_number = _min_sequence_number
    models.Shard.get_records = _get_records
    models.Stream.get_shard_for_key = _get_shard_for_key
    models.Stream.split_shard = _split_shard
    models.Stream.put_record = _stream_put_record
    BaseResponse._enrich_response = staticmethod(_enrich_response)  # type: ignore[method-assign]
    moto_backends.list_of_moto_modules = _moto_modules
    _applied = True

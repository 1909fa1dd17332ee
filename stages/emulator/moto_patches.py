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
  benchmark run left the emulator at ~2 GB. The data now goes to one unlinked temporary file per
  shard (the kernel frees it when the process exits, even on SIGKILL) and is read back with
  ``pread``; memory holds a small entry per Kinesis record, which carries a whole aggregate.
- moto kept every S3 object body in memory up to 5 MiB (``SpooledTemporaryFile``), and one that
  grew past that kept its own temporary file open: thousands of objects would run the process
  out of file descriptors. Bodies above a threshold now go to one shared unlinked file as well.
- moto's ``BaseModel`` appends every instance it ever creates to a class-level list, for its
  ``/moto-api/data.json`` dashboard: every record, every overwritten S3 object and every
  DynamoDB item version stayed reachable forever. Instances are no longer tracked.
"""

from __future__ import annotations

import os
import tempfile
import threading
from base64 import b64decode, b64encode
from types import SimpleNamespace
from typing import Any

from moto.core import common_models
from moto.core.utils import unix_time, utcnow
from moto.kinesis import models
from moto.s3 import models as s3_models

_write_lock = threading.RLock()
_MAX_GET_BYTES = 10 * 1024 * 1024
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

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)


class _DiskRecord(models.Record):
    """A Kinesis record whose data lives in its shard's file; moto's attributes otherwise."""

    def __init__(
        self,
        storage: _AppendOnlyFile,
        partition_key: str,
        data: bytes,
        sequence_number: int,
        explicit_hash_key: str,
    ) -> None:
        self.partition_key = partition_key
        self.sequence_number = sequence_number
        self.explicit_hash_key = explicit_hash_key
        self.created_at_datetime = utcnow()
        self.created_at = unix_time(self.created_at_datetime)
        self.size = len(data)
        self._storage = storage
        self._offset = storage.append(data)

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


def _storage_of(shard: models.Shard) -> _AppendOnlyFile:
    storage = getattr(shard, "_disk_storage", None)
    if storage is None:
        storage = shard._disk_storage = _AppendOnlyFile()  # type: ignore[attr-defined]
    return storage


# Both ends are read under the write lock: a put between ``reversed()`` and ``next()`` would
# make the dict iterator raise "changed size during iteration".
def _max_sequence_number(self: models.Shard) -> int:
    with _write_lock:
        return next(reversed(self.records)) if self.records else 0


def _min_sequence_number(self: models.Shard) -> int:
    with _write_lock:
        return next(iter(self.records)) if self.records else 0


def _put_record(self: models.Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    raw = b64decode(data)
    with _write_lock:
        sequence_number = _max_sequence_number(self) + 1
        self.records[sequence_number] = _DiskRecord(
            _storage_of(self), partition_key, raw, sequence_number, explicit_hash_key
        )
    return str(sequence_number)


def _get_records(
    self: models.Shard, last_sequence_id: str, limit: int | None
) -> tuple[list[models.Record], int, int]:
    position = int(last_sequence_id)
    newest = _max_sequence_number(self)
    results: list[models.Record] = []
    size = 0
    seq = max(position + 1, _min_sequence_number(self))
    while seq <= newest and (limit is None or len(results) < limit) and size < _MAX_GET_BYTES:
        record = self.records.get(seq)
        if record is not None:
            results.append(record)
            size += _data_size(record) + len(record.partition_key)
            position = seq
        seq += 1
    millis_behind = 0
    if results and newest:
        millis_behind = int((self.records[newest].created_at - results[-1].created_at) * 1000)
    return results, position, millis_behind


def _data_size(record: models.Record) -> int:
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
    _applied = True

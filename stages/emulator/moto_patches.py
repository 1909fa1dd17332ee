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

- moto kept every record's data in memory, base64-encoded (a third larger than the data), so
  the emulator grew with every record it was sent. Records now go to unlinked temporary files,
  a new pair per shard every 64 MiB (the kernel frees them when the process exits, even on
  SIGKILL): the data, and an index entry of fixed size per record (``kinesis_log``); memory
  holds nothing per record.
- moto never expired records. Records older than the stream's retention period (24 h unless
  changed) are now dropped as Kinesis drops them, and a file is freed once all its records are.
  Sequence numbers keep counting up across it, as in Kinesis.
- moto kept every S3 object body in memory up to 5 MiB (``SpooledTemporaryFile``), and one that
  grew past that kept its own temporary file open: thousands of objects would run the process
  out of file descriptors. Bodies above a threshold now go to shared unlinked files of up to
  64 MiB, each freed once no body in it is alive. The objects' metadata is on disk too
  (``s3_keys``).
- Those files are under ``DATA_DIR/emulator``, not ``/tmp``, which is a RAM-backed tmpfs on many
  systems.
- moto put a fresh request id into every response body with a look-behind regular expression
  over the whole body, XML or not: on GetRecords answers of megabytes that was one of the
  emulator's largest costs. It now runs only on bodies that contain ``<RequestId>``.
- moto lists its own package directory (a ``listdir`` and an ``isdir`` call per entry) on
  every request to find the backend for the Host header, a visible share of the emulator's CPU;
  the list is computed once.
- moto's ``BaseModel`` appends every instance it ever creates to a class-level list, for its
  ``/moto-api/data.json`` dashboard: every record, every overwritten S3 object and every
  DynamoDB item version stayed reachable forever. Instances are no longer tracked.
- moto added two CloudWatch datapoints per PutRecord(s) call and kept them all; the emulator
  keeps the newest ``MAX_CLOUDWATCH_DATUMS`` (2,000).
- PutRecords decoded each record's base64 twice (one of the emulator's largest costs under
  load); it now decodes it once.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
import time
from base64 import b64decode
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from moto import backends as moto_backends
from moto.core import common_models
from moto.core.responses import BaseResponse
from moto.core.utils import unix_time, utcnow
from moto.kinesis import models
from moto.s3 import models as s3_models
from moto.utilities.aws_headers import gen_amzn_requestid_long

from stages.emulator import kinesis_log

_write_lock = threading.RLock()
_MAX_GET_BYTES = 10 * 1024 * 1024
# A shard's record data goes to a new file every this many bytes, so that what the retention
# period expires is freed a file at a time.
_SEGMENT_BYTES = 64 * 1024 * 1024
_applied = False
# Where the emulator's data files go (None: the system's temporary directory); set by apply().
_data_directory: Path | None = None


class _AppendOnlyFile:
    """Append-only storage in an already unlinked file; what is written is never moved."""

    _idents = itertools.count(1)

    def __init__(self, directory: Path | None) -> None:
        self.ident = next(self._idents)
        # Open as long as data in it is referred to (see _SegmentedStore). Not
        # in /tmp by default: that is a RAM-backed tmpfs on many systems.
        self._file = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="emulator-", dir=directory, buffering=0
        )
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

    def overwrite(self, offset: int, data: bytes) -> None:
        """Replace bytes already written (an index entry's arrival time, in tests)."""
        os.pwrite(self._fd, data, offset)

    @property
    def size(self) -> int:
        return self._end

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def __del__(self) -> None:
        # The last record or body in this file is gone: close it, which frees its space.
        self._file.close()


class _SegmentedStore:
    """Append-only files of up to ``_SEGMENT_BYTES``; each piece of data refers to its file.

    A file is freed (closed, and being unlinked, its space returned) by CPython when nothing
    refers to it any more: the current one by this store, older ones by the Kinesis records or
    S3 bodies in them. So an expired record's or overwritten body's space is returned once its
    whole file is unused, and a file is never closed while a GetRecords answer being built, or
    a GET, still reads from it (nor is its descriptor number reused under it).
    """

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._current: _AppendOnlyFile | None = None
        self._lock = threading.Lock()

    def append(self, data: bytes) -> tuple[_AppendOnlyFile, int]:
        with self._lock:
            if self._current is None or self._current.size >= _SEGMENT_BYTES:
                self._current = _AppendOnlyFile(self._directory)
            storage = self._current
        return storage, storage.append(data)


class _ObjectBody:
    """What moto's ``FakeKey`` keeps its body in, instead of a ``SpooledTemporaryFile``.

    moto sets a body with ``seek(0); truncate(); write(value)`` and reads it with ``seek`` and
    ``read``. A body written whole and larger than the threshold goes to the store and holds
    only where it is; anything else stays in memory. Like a file, a closed body raises
    ``ValueError`` (moto's ``__getstate__`` relies on it, and a GET racing a DELETE then fails
    loudly instead of answering an empty object).
    """

    def __init__(self, store: _SegmentedStore, threshold: int) -> None:
        self._store = store
        self._threshold = threshold
        self._memory = bytearray()
        self._on_disk: tuple[_AppendOnlyFile, int, int] | None = None  # (file, offset, size)
        self._position = 0
        self._closed = False

    _default: tuple[_SegmentedStore, int] | None = None

    @classmethod
    def restore(cls, handle: tuple[Any, ...]) -> _ObjectBody:
        """A body from ``handle()``'s answer (S3 key metadata is kept on disk, see s3_keys)."""
        assert cls._default is not None, "apply() sets where bodies go"
        body = cls(*cls._default)
        if handle[0] == "file":
            body._on_disk = (handle[1], handle[2], handle[3])
        elif handle[0] == "memory":
            body._memory = bytearray(handle[1])
        else:
            body._closed = True
        return body

    def handle(self) -> tuple[Any, ...]:
        """Where the body is: ("file", file, offset, size), ("memory", bytes) or ("closed",)."""
        if self._closed:
            return ("closed",)
        if self._on_disk is not None:
            return ("file", *self._on_disk)
        return ("memory", bytes(self._memory))

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def _size(self) -> int:
        return self._on_disk[2] if self._on_disk is not None else len(self._memory)

    def _to_memory(self) -> None:
        if self._on_disk is not None:
            storage, offset, size = self._on_disk
            self._memory = bytearray(storage.read(offset, size))
            self._on_disk = None

    def seek(self, position: int, whence: int = 0) -> int:
        self._check_open()
        if whence == 1:
            position += self._position
        elif whence == 2:
            position += self._size()
        self._position = position
        return position

    def tell(self) -> int:
        self._check_open()
        return self._position

    def truncate(self, size: int | None = None) -> int:
        self._check_open()
        size = self._position if size is None else size
        if size == 0:
            self._memory = bytearray()
            self._on_disk = None
        else:
            self._to_memory()
            del self._memory[size:]
        return size

    def write(self, data: bytes) -> int:
        self._check_open()
        whole = self._position == 0 and self._on_disk is None and not self._memory
        if whole and len(data) > self._threshold:
            storage, offset = self._store.append(data)
            self._on_disk = (storage, offset, len(data))
        else:
            self._to_memory()
            self._memory[self._position : self._position + len(data)] = data
        self._position += len(data)
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        remaining = max(0, self._size() - self._position)
        wanted = remaining if size is None or size < 0 else min(size, remaining)
        if self._on_disk is not None:
            storage, offset, _ = self._on_disk
            chunk = storage.read(offset + self._position, wanted)
        else:
            chunk = bytes(self._memory[self._position : self._position + wanted])
        self._position += len(chunk)
        return chunk

    def close(self) -> None:
        self._closed = True
        self._memory = bytearray()
        self._on_disk = None


def _keep_object_bodies_in(store: _SegmentedStore, threshold: int) -> None:
    _ObjectBody._default = (store, threshold)

    def make_body(*_args: Any, **_kwargs: Any) -> _ObjectBody:
        return _ObjectBody(store, threshold)

    # moto.s3.models uses the tempfile module for exactly this and nothing else.
    s3_models.tempfile = SimpleNamespace(SpooledTemporaryFile=make_body)  # type: ignore[assignment]


def _log_of(shard: models.Shard) -> kinesis_log.RecordLog:
    records = shard.records
    if not isinstance(records, kinesis_log.RecordLog):
        # A shard moto made with a plain dict (MergeShards, SplitShard); nothing in it yet.
        assert not records, "records written around the record log"
        records = shard.records = kinesis_log.RecordLog(_data_directory, _SEGMENT_BYTES)
    return records


def _shard_init(self: models.Shard, *args: Any, **kwargs: Any) -> None:
    _original_shard_init(self, *args, **kwargs)
    self.records = kinesis_log.RecordLog(_data_directory, _SEGMENT_BYTES)  # type: ignore[assignment]


_original_shard_init = models.Shard.__init__


# The newest sequence number ever given out is the log's, kept apart from the records: once the
# oldest have expired (or all of them), numbering goes on from there, never from those left.
def _max_sequence_number(self: models.Shard) -> int:
    with _write_lock:
        return _log_of(self).last


def _min_sequence_number(self: models.Shard) -> int:
    with _write_lock:
        log = _log_of(self)
        return log.first_live if log else 0


def _put_record(self: models.Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    return _put_raw(self, partition_key, b64decode(data), explicit_hash_key)


def _put_raw(self: models.Shard, partition_key: str, raw: bytes, explicit_hash_key: str) -> str:
    with _write_lock:
        sequence_number = _log_of(self).append(
            partition_key, raw, explicit_hash_key or None, unix_time(utcnow())
        )
    return str(sequence_number)


def expire_records(shard: models.Shard, retention_seconds: float, now: float) -> int:
    """Drop the records older than the retention period; returns how many."""
    with _write_lock:
        return _log_of(shard).expire(now - retention_seconds)


_original_stream_put = models.Stream.put_record


def _stream_put_record(
    self: models.Stream, partition_key: str, explicit_hash_key: str, data: str
) -> tuple[str, str]:
    sequence_number, shard_id = _original_stream_put(self, partition_key, explicit_hash_key, data)
    _expire_stream(self)
    return sequence_number, shard_id


def _expire_stream(stream: models.Stream) -> None:
    # One look at each shard's oldest record; every shard of the stream, so that a parent
    # closed by a split, which nobody writes to any more, expires too.
    now = time.time()
    for shard in list(stream.shards.values()):
        expire_records(shard, stream.retention_period_hours * 3600, now)


# moto records two CloudWatch datapoints per PutRecord(s) call and never drops one, so they grow
# with the traffic for as long as the emulator runs. The emulator keeps the newest. Nothing here
# reads them; 2,000 keep the last thousand calls for whoever looks.
MAX_CLOUDWATCH_DATUMS = 2_000
_original_send_metrics = models.KinesisBackend._send_stream_metrics


def _send_stream_metrics(
    self: models.KinesisBackend, stream_name: str, incoming_bytes: int, incoming_records: int
) -> None:
    _original_send_metrics(self, stream_name, incoming_bytes, incoming_records)
    data = models.cloudwatch_backends[self.account_id][self.region_name].metric_data
    # Trimmed in steps of a quarter, so the cost of the list copy is spread over many calls.
    if len(data) > MAX_CLOUDWATCH_DATUMS * 5 // 4:
        del data[: len(data) - MAX_CLOUDWATCH_DATUMS]


_original_put_records = models.KinesisBackend.put_records


def _put_records(
    self: models.KinesisBackend, stream_arn: str, stream_name: str, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """moto's PutRecords, decoding each record's base64 once (moto decoded it twice, one of the
    emulator's largest costs under load) and expiring once per call, not once per record."""
    stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
    if stream.lambda_event_source_mappings:
        return _original_put_records(self, stream_arn, stream_name, records)
    if len(records) > 500:
        raise models.TooManyRecords
    raws = [b64decode(record.get("Data", "")) for record in records]
    sizes = [
        len(raw) + len(record.get("PartitionKey", ""))
        for raw, record in zip(raws, records, strict=True)
    ]
    if sum(sizes) > 5 * 1024 * 1024:
        raise models.TotalRecordsSizeExceedsLimit
    over = next((index for index, size in enumerate(sizes) if size > 1024 * 1024), None)
    if over is not None:
        raise models.RecordSizeExceedsLimit(position=over + 1)
    results = []
    for raw, record in zip(raws, records, strict=True):
        partition_key = record.get("PartitionKey")
        explicit_hash_key = record.get("ExplicitHashKey")
        shard = stream.get_shard_for_key(partition_key, explicit_hash_key)
        sequence_number = _put_raw(shard, partition_key, raw, explicit_hash_key)
        results.append({"SequenceNumber": sequence_number, "ShardId": shard.shard_id})
    _expire_stream(stream)
    self._send_stream_metrics(
        stream.stream_name, incoming_bytes=sum(sizes), incoming_records=len(records)
    )
    return {"FailedRecordCount": 0, "Records": results}


def _get_records(
    self: models.Shard, last_sequence_id: str, limit: int | None
) -> tuple[list[kinesis_log.StoredRecord], int, int]:
    position = int(last_sequence_id)
    with _write_lock:
        log = _log_of(self).view()
    # Read outside the lock: a page of 10 MiB would hold up every PutRecords meanwhile.
    newest = log.last
    stop = newest if limit is None else min(newest, max(position, log.first_live - 1) + limit)
    results = log.read(position + 1, stop, _MAX_GET_BYTES)
    latest_at = log.created_at(newest) if results else 0.0
    millis_behind = 0
    if results:
        position = results[-1].sequence_number
        millis_behind = int((latest_at - results[-1].created_at) * 1000)
    return results, position, millis_behind


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


def _sequence_number_at(self: models.Shard, at_timestamp: float) -> int:
    """moto's rule (0 when nothing arrived before ``at_timestamp``, else the newest record that
    did) as a binary search over arrival times."""
    with _write_lock:
        log = _log_of(self)
        if not log or at_timestamp <= log.created_at(log.first_live):
            return 0
        found = log.last_before(at_timestamp)
        return 0 if found is None else found


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
    # What BaseModel.__new__ does, minus the tracking (super(): some models are dicts too).
    return super(common_models.BaseModel, cls).__new__(cls)


def apply(s3_memory_object_bytes: int, data_directory: Path | None = None) -> None:
    global _applied, _data_directory
    if _applied:
        return
    if data_directory is not None:
        data_directory.mkdir(parents=True, exist_ok=True)
    _data_directory = data_directory
    _keep_object_bodies_in(_SegmentedStore(data_directory), s3_memory_object_bytes)
    from stages.emulator import s3_keys

    s3_keys.install(data_directory)
    common_models.BaseModel.__new__ = staticmethod(_new_untracked)  # type: ignore[method-assign]
    models.Shard.__init__ = _shard_init  # type: ignore[method-assign]
    models.Shard.put_record = _put_record
    models.Shard.get_max_sequence_number = _max_sequence_number
    models.Shard.get_min_sequence_number = _min_sequence_number
    models.Shard.get_records = _get_records
    models.Stream.get_shard_for_key = _get_shard_for_key
    models.Stream.split_shard = _split_shard
    models.Shard.get_sequence_number_at = _sequence_number_at
    models.Stream.put_record = _stream_put_record
    models.KinesisBackend.put_records = _put_records
    models.KinesisBackend._send_stream_metrics = _send_stream_metrics
    BaseResponse._enrich_response = staticmethod(_enrich_response)  # type: ignore[method-assign]
    moto_backends.list_of_moto_modules = _moto_modules
    _applied = True

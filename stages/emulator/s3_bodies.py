"""S3 object bodies in shared files, and reads of them that never share a position.

- moto kept every S3 object body in memory up to 5 MiB (``SpooledTemporaryFile``), and one that
  grew past that kept its own temporary file open: thousands of objects would run the process
  out of file descriptors. Bodies above a threshold now go to shared unlinked files of up to
  ``files.SEGMENT_BYTES``, each freed once no body in it is alive. The objects' metadata is on
  disk too (``s3_keys``).
- moto computes an S3 object's ETag on first use by seeking and reading its body without the
  key's lock, while a GET reads the same body under the lock: the two move one shared position,
  so a GET racing the PUT's own answer could get an empty body under the object's checksum, and
  the ETag could become the MD5 of nothing. Both now read the whole body without the position.
- moto answered a ranged GET by reading the whole body and slicing the range out of it: a
  Parquet reader asking for a footer and two column chunks of an 11 MB file made the emulator
  read and copy 33 MB. A GET's body is now read lazily: a range reads only its bytes from the
  file (``RangedBody``); a GET without a range still reads the whole body.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from moto.s3 import models as s3_models
from moto.s3 import responses as s3_responses
from moto.utilities.utils import md5_hash

from stages.emulator.files import AppendOnlyFile, SegmentedStore


class ObjectBody:
    """What moto's ``FakeKey`` keeps its body in, instead of a ``SpooledTemporaryFile``.

    moto sets a body with ``seek(0); truncate(); write(value)`` and reads it with ``seek`` and
    ``read``. A body written whole and larger than the threshold goes to the store and holds
    only where it is; anything else stays in memory. Like a file, a closed body raises
    ``ValueError`` (moto's ``__getstate__`` relies on it, and a GET racing a DELETE then fails
    loudly instead of answering an empty object).
    """

    def __init__(self, store: SegmentedStore, threshold: int) -> None:
        self._store = store
        self._threshold = threshold
        self._memory = bytearray()
        self._on_disk: tuple[AppendOnlyFile, int, int] | None = None  # (file, offset, size)
        self._position = 0
        self._closed = False

    _default: tuple[SegmentedStore, int] | None = None

    @classmethod
    def restore(cls, handle: tuple[Any, ...]) -> ObjectBody:
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

    def _contents(self) -> tuple[tuple[AppendOnlyFile, int, int] | None, bytearray]:
        # Read both before checking for close(): close() marks the body closed before it lets
        # the contents go, so contents read while still open are whole.
        on_disk, memory = self._on_disk, self._memory
        self._check_open()
        return on_disk, memory

    def read(self, size: int | None = -1) -> bytes:
        on_disk, memory = self._contents()
        total = on_disk[2] if on_disk is not None else len(memory)
        remaining = max(0, total - self._position)
        wanted = remaining if size is None or size < 0 else min(size, remaining)
        if on_disk is not None:
            storage, offset, _ = on_disk
            chunk = storage.read(offset + self._position, wanted)
        else:
            chunk = bytes(memory[self._position : self._position + wanted])
        self._position += len(chunk)
        return chunk

    def whole(self) -> bytes:
        """The entire body, without touching the position that ``seek``/``read`` share."""
        on_disk, memory = self._contents()
        if on_disk is not None:
            storage, offset, size = on_disk
            return storage.read(offset, size)
        return bytes(memory)

    def snapshot(self) -> RangedBody:
        """The body as it is now, to be read in ranges later (see ``RangedBody``)."""
        on_disk, memory = self._contents()
        return RangedBody(on_disk, memory)

    def close(self) -> None:
        self._closed = True
        self._memory = bytearray()
        self._on_disk = None


class RangedBody:
    """A GET answer's body that reads from disk only the bytes sliced out of it.

    moto's range handling takes ``len()`` of the body and one slice ``[begin:end + 1]``; a GET
    without a usable range is answered with ``whole()``. It holds the body's file (or bytes) as
    they were when the GET found the key, so an overwrite or delete racing the answer does not
    change what it reads, and the file stays open until the answer is read.
    """

    __slots__ = ("_memory", "_on_disk")

    def __init__(self, on_disk: tuple[AppendOnlyFile, int, int] | None, memory: bytearray) -> None:
        self._on_disk = on_disk
        self._memory = bytes(memory) if on_disk is None else b""

    def __len__(self) -> int:
        return self._on_disk[2] if self._on_disk is not None else len(self._memory)

    def __getitem__(self, index: slice) -> bytes:
        if not isinstance(index, slice):
            raise TypeError("a body is read in slices")
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError("a body is read in contiguous slices")
        if self._on_disk is None:
            return self._memory[start:stop]
        storage, offset, _ = self._on_disk
        return storage.read(offset + start, max(0, stop - start))

    def whole(self) -> bytes:
        return self[0 : len(self)]


# Set while moto's GetObject handler builds its answer: ``FakeKey.value`` then gives a
# ``RangedBody`` instead of the bytes; ``_key_response`` turns one left whole into bytes.
_answering_get = threading.local()


def keep_object_bodies_in(store: SegmentedStore, threshold: int) -> None:
    ObjectBody._default = (store, threshold)

    def make_body(*_args: Any, **_kwargs: Any) -> ObjectBody:
        return ObjectBody(store, threshold)

    # moto.s3.models uses the tempfile module for exactly this and nothing else.
    s3_models.tempfile = SimpleNamespace(SpooledTemporaryFile=make_body)  # type: ignore[assignment]


_original_value = s3_models.FakeKey.value
_original_etag = s3_models.FakeKey.etag


def _key_value(key: s3_models.FakeKey) -> bytes | RangedBody:
    body = key._value_buffer
    if isinstance(body, ObjectBody):
        if getattr(_answering_get, "active", False):
            return body.snapshot()
        return body.whole()
    return _original_value.fget(key)  # type: ignore[attr-defined]


def _key_etag(key: s3_models.FakeKey) -> str:
    # moto computes the ETag on first use by seeking and reading the body without the key's
    # lock, while a GET of the same key reads it under the lock: the two share one position,
    # and a GET answered while the PUT's response computed the ETag got an empty body with
    # the object's checksum. Reading the whole body does not move the position.
    body = key._value_buffer
    if key._etag is None and isinstance(body, ObjectBody):
        key._etag = md5_hash(body.whole()).hexdigest()
    return _original_etag.fget(key)  # type: ignore[attr-defined]


_original_get_object = s3_responses.S3Response.get_object
_original_key_response = s3_responses.S3Response.key_response


def _get_object(self: s3_responses.S3Response) -> Any:
    # GetObject's handler reads ``key.value`` once, for its answer's body.
    _answering_get.active = True
    try:
        return _original_get_object(self)
    finally:
        _answering_get.active = False


def _key_response(
    self: s3_responses.S3Response, request: Any, full_url: str, headers: dict[str, Any]
) -> Any:
    # moto slices a satisfiable range out of the body here; what is left unsliced (no range,
    # several ranges, a range moto treats as none) is answered whole, as bytes.
    status, response_headers, body = _original_key_response(self, request, full_url, headers)
    if isinstance(body, RangedBody):
        body = body.whole()
    return status, response_headers, body


def install(store: SegmentedStore, threshold: int) -> None:
    keep_object_bodies_in(store, threshold)
    s3_responses.S3Response.get_object = _get_object  # type: ignore[method-assign]
    s3_responses.S3Response.key_response = _key_response  # type: ignore[method-assign]
    s3_models.FakeKey.value = property(_key_value, _original_value.fset)  # type: ignore[method-assign]
    s3_models.FakeKey.etag = property(_key_etag)  # type: ignore[method-assign]

"""Append-only unlinked files, the storage of the emulator's Kinesis records and S3 bodies.

moto kept both in memory; here they go to files under ``DATA_DIR/emulator`` (not ``/tmp``, a
RAM-backed tmpfs on many systems), unlinked as soon as they are created, so the kernel frees
them when the process exits, even on SIGKILL. Data is written at the end of a file and never
moved; a file is closed, and its space returned, when nothing refers to it any more.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from pathlib import Path

# A new file every this many bytes, so that what expires or is overwritten is freed a file at a
# time.
SEGMENT_BYTES = 64 * 1024 * 1024


class AppendOnlyFile:
    """Append-only storage in an already unlinked file; what is written is never moved."""

    _idents = itertools.count(1)

    def __init__(self, directory: Path | None) -> None:
        self.ident = next(self._idents)
        # Open as long as data in it is referred to (see SegmentedStore). Not
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


class SegmentedStore:
    """Append-only files of up to ``SEGMENT_BYTES``; each piece of data refers to its file.

    A file is freed (closed, and being unlinked, its space returned) by CPython when nothing
    refers to it any more: the current one by this store, older ones by the Kinesis records or
    S3 bodies in them. So an expired record's or overwritten body's space is returned once its
    whole file is unused, and a file is never closed while a GetRecords answer being built, or
    a GET, still reads from it (nor is its descriptor number reused under it).
    """

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._current: AppendOnlyFile | None = None
        self._lock = threading.Lock()

    def append(self, data: bytes) -> tuple[AppendOnlyFile, int]:
        with self._lock:
            if self._current is None or self._current.size >= SEGMENT_BYTES:
                self._current = AppendOnlyFile(self._directory)
            storage = self._current
        return storage, storage.append(data)

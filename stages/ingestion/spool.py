"""An append-only on-disk spool for records Kinesis could not take, drained in order.

Records are JSON lines in numbered segment files (``seg-<n>.jsonl``). Every append is fsynced
before it returns, so a 2xx for a spooled batch survives a crash. Draining reads the oldest
segment from its committed offset (kept in ``seg-<n>.offset``); a chunk's offset advances only
after Kinesis acknowledged every record of it, and a segment is deleted only once fully drained.
A restart picks up the segments and offsets it finds, so the drain resumes where it stopped.

Power loss: a file's fsync does not make its name durable, the directory's does. So the directory
is fsynced after a segment is created (before the append that created it returns), after an
offset file is renamed into place (before the chunk counts as drained), and after a drained
segment's files are unlinked. The offset is durable before its segment is deleted, so a lost
unlink brings back a segment already read to its end, which the drain then removes. A segment
is unlinked before its offset file, and offset files left without their segment are removed when
the spool opens: a new segment may get the same number after a restart and must start at 0.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Gauge

SEGMENT_BYTES = 4 * 1024 * 1024
_SEGMENT_NAME = re.compile(r"^seg-(\d{12})\.jsonl$")

_M_SPOOL_BYTES = Gauge("ingestion_spool_bytes", "Bytes in the spool not yet drained to Kinesis")


class SpoolFull(Exception):
    """The spool has no room (its size limit) or the disk refused the write."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive lines of one segment, from ``start`` to ``end`` (byte offsets)."""

    segment: int
    start: int
    end: int
    lines: list[bytes]


class Spool:
    def __init__(
        self, directory: Path, max_bytes: int, *, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self._dir = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        missing = [d for d in (self._dir, *self._dir.parents) if not d.is_dir()]
        if missing:
            self._dir.mkdir(parents=True, exist_ok=True)
            for created in reversed(missing):
                _fsync_dir(created.parent)
        self._remove_orphan_offsets()
        self._segments = self._existing_segments()
        # Numbers only grow while the process runs: a chunk is known by (segment, offset), and a
        # drained-and-deleted segment's number coming back would make the drainer take a new
        # chunk for one it already sent (and skip its records).
        self._last_segment = self._segments[-1] if self._segments else 0
        self._pending = sum(self._size(seg) - self._offset(seg) for seg in self._segments)
        # Appends go to the newest segment until it is full; a restart starts a new one so that
        # a half-written last line from a crash is never appended to.
        self._active: int | None = None
        self.new_data = threading.Event()
        if self._pending:
            self.new_data.set()
        _M_SPOOL_BYTES.set(self._pending)

    # --- writing -----------------------------------------------------------------------------
    def has_room(self, nbytes: int) -> bool:
        with self._lock:
            return self._pending + nbytes <= self._max_bytes

    def append(self, lines: list[bytes]) -> None:
        """Write ``lines`` (each ending in a newline) durably, all or nothing."""
        data = b"".join(lines)
        with self._lock:
            if self._pending + len(data) > self._max_bytes:
                raise SpoolFull(
                    f"spool holds {self._pending} bytes; {len(data)} more would pass its limit "
                    f"of {self._max_bytes} (SPOOL_MAX_BYTES)"
                )
            segment = self._segment_for_append(len(data))
            path = self._path(segment)
            try:
                created = not path.exists()
                size_before = 0 if created else path.stat().st_size
                with open(path, "ab") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                if created:
                    _fsync_dir(self._dir)
            except OSError as exc:
                self._truncate_quietly(path, size_before)
                raise SpoolFull(f"cannot write the spool: {exc.strerror or exc}") from exc
            self._pending += len(data)
            _M_SPOOL_BYTES.set(self._pending)
        self.new_data.set()

    # --- draining ----------------------------------------------------------------------------
    def pending_bytes(self) -> int:
        with self._lock:
            return self._pending

    def has_backlog(self) -> bool:
        return self.pending_bytes() > 0

    def segment_count(self) -> int:
        with self._lock:
            return len(self._segments)

    def oldest_chunk(self, max_records: int, max_bytes: int = 4 * 1024 * 1024) -> Chunk | None:
        with self._lock:
            for segment in list(self._segments):
                start = self._offset(segment)
                lines = self._read_lines(segment, start, max_records, max_bytes)
                if lines:
                    return Chunk(segment, start, start + sum(map(len, lines)), lines)
                if segment != self._active:
                    self._remove_segment(segment)
            return None

    def commit(self, chunk: Chunk) -> None:
        """Record that every line of ``chunk`` is on Kinesis."""
        with self._lock:
            self._write_offset(chunk.segment, chunk.end)
            self._pending -= chunk.end - chunk.start
            _M_SPOOL_BYTES.set(self._pending)
            if chunk.end >= self._size(chunk.segment):
                if chunk.segment == self._active:
                    self._active = None
                self._remove_segment(chunk.segment)

    # --- internals ---------------------------------------------------------------------------
    def _remove_orphan_offsets(self) -> None:
        orphans = [
            path
            for path in self._dir.iterdir()
            if path.name.endswith(".offset.tmp")
            or (path.suffix == ".offset" and not path.with_suffix(".jsonl").exists())
        ]
        for path in orphans:
            path.unlink(missing_ok=True)
        if orphans:
            _fsync_dir(self._dir)

    def _existing_segments(self) -> list[int]:
        found = []
        for path in self._dir.iterdir():
            match = _SEGMENT_NAME.match(path.name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def _segment_for_append(self, nbytes: int) -> int:
        if self._active is not None and self._size(self._active) + nbytes <= self._segment_bytes:
            return self._active
        self._last_segment += 1
        self._active = self._last_segment
        self._segments.append(self._active)
        return self._active

    def _path(self, segment: int) -> Path:
        return self._dir / f"seg-{segment:012d}.jsonl"

    def _offset_path(self, segment: int) -> Path:
        return self._dir / f"seg-{segment:012d}.offset"

    def _size(self, segment: int) -> int:
        try:
            return self._path(segment).stat().st_size
        except FileNotFoundError:
            return 0

    def _offset(self, segment: int) -> int:
        try:
            return int(self._offset_path(segment).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_offset(self, segment: int, offset: int) -> None:
        tmp = self._offset_path(segment).with_suffix(".offset.tmp")
        with open(tmp, "w") as handle:
            handle.write(str(offset))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._offset_path(segment))
        _fsync_dir(self._dir)

    def _read_lines(
        self, segment: int, start: int, max_records: int, max_bytes: int
    ) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        try:
            with open(self._path(segment), "rb") as handle:
                handle.seek(start)
                for line in handle:
                    if not line.endswith(b"\n"):
                        break  # a torn last line from a crash mid-append: never acknowledged
                    lines.append(line)
                    total += len(line)
                    if len(lines) >= max_records or total >= max_bytes:
                        break
        except FileNotFoundError:
            return []
        return lines

    def _remove_segment(self, segment: int) -> None:
        self._pending -= max(0, self._size(segment) - self._offset(segment))
        _M_SPOOL_BYTES.set(max(0, self._pending))
        self._pending = max(0, self._pending)
        for path in (self._path(segment), self._offset_path(segment)):
            path.unlink(missing_ok=True)
        _fsync_dir(self._dir)
        self._segments.remove(segment)

    @staticmethod
    def _truncate_quietly(path: Path, size: int) -> None:
        try:
            with open(path, "r+b") as handle:
                handle.truncate(size)
        except OSError:
            pass


def _fsync_dir(directory: Path) -> None:
    """Make the directory's entries (created, renamed, removed names) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

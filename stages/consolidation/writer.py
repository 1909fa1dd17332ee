"""OTLP-JSON lines (one ``ExportLogsServiceRequest`` per line) in size-rotated files.

File names are generated here (``otlp-logs-<n>.jsonl``), never taken from input; at most
``max_files`` are kept, the oldest deleted first.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import IO

_FILE_NAME = re.compile(r"^otlp-logs-(\d{9})\.jsonl$")


class RotatingWriter:
    def __init__(self, directory: Path, *, max_bytes: int, max_files: int) -> None:
        self._dir = directory
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._lock = threading.Lock()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._numbers = self._existing()
        self._handle: IO[bytes] | None = None
        self._size = 0
        self.rotations = 0

    def write_line(self, line: bytes) -> None:
        """Append one line (ending in a newline). Raises OSError when the disk refuses."""
        with self._lock:
            if self._handle is None or (self._size and self._size + len(line) > self._max_bytes):
                self._rotate()
            assert self._handle is not None
            self._handle.write(line)
            self._handle.flush()
            self._size += len(line)

    def files(self) -> list[Path]:
        with self._lock:
            return [self._path(n) for n in self._numbers]

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def _rotate(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self.rotations += 1
        number = (self._numbers[-1] + 1) if self._numbers else 1
        self._handle = open(self._path(number), "ab")  # noqa: SIM115 - kept open across writes
        self._size = 0
        self._numbers.append(number)
        while len(self._numbers) > self._max_files:
            self._path(self._numbers.pop(0)).unlink(missing_ok=True)

    def _existing(self) -> list[int]:
        numbers = []
        for path in self._dir.iterdir():
            match = _FILE_NAME.match(path.name)
            if match:
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def _path(self, number: int) -> Path:
        return self._dir / f"otlp-logs-{number:09d}.jsonl"

"""Local category files: one folder per catalogue category plus ``anomaly/``.

Folder and file names come only from the catalogue (``LOG_TYPES``) and the three record kinds,
never from a record's own strings: a log type the catalogue does not know is written to the
fixed ``other.jsonl`` of its kind's folder.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import BinaryIO, Final

from stages.common.records import Record
from stages.common.vocabulary import LOG_TYPES

OTHER: Final = "other"
ANOMALY_FOLDER: Final = "anomaly"
_KIND_FOLDERS: Final = {"log": "log", "metric": "metric", "apm": "apm"}
# Built once from the catalogue: the values returned below are these strings, not the input's.
_LOG_TYPE_FILES: Final = {name: (category, f"{name}.jsonl") for name, category in LOG_TYPES.items()}


def category_file(record: Record) -> tuple[str, str]:
    """(folder, file name) for ``record``, both taken from the catalogue's own strings."""
    known = _LOG_TYPE_FILES.get(record.log_type or "")
    if known is not None:
        return known
    return _KIND_FOLDERS[record.kind], f"{OTHER}.jsonl"


def anomaly_file(record: Record) -> tuple[str, str]:
    return ANOMALY_FOLDER, category_file(record)[1]


class CategoryFiles:
    """Appends records to their category files (and anomalous ones to ``anomaly/`` too).

    The files stay open: a batch touches dozens of them, and opening each one per batch was one
    of the Ingestion Interface's largest costs. There are at most a few hundred (the catalogue's
    log types, per kind and in ``anomaly/``). Each group is one unbuffered ``write``, so every
    batch is on disk, whole lines only, when ``write`` returns.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._handles: dict[tuple[str, str], BinaryIO] = {}
        self._lock = threading.Lock()

    def write(self, records: list[Record], lines: list[bytes]) -> int:
        """Append each record's line; returns how many files were written. Raises OSError."""
        grouped: dict[tuple[str, str], list[bytes]] = {}
        for record, line in zip(records, lines, strict=True):
            grouped.setdefault(category_file(record), []).append(line)
            if record.is_anomaly:
                grouped.setdefault(anomaly_file(record), []).append(line)
        with self._lock:
            for place, chunk in grouped.items():
                self._handle(place).write(b"".join(chunk))
        return len(grouped)

    def close(self) -> None:
        with self._lock:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()

    def _handle(self, place: tuple[str, str]) -> BinaryIO:
        handle = self._handles.get(place)
        if handle is None:
            folder, name = place
            directory = self._root / folder
            directory.mkdir(parents=True, exist_ok=True)
            handle = open(directory / name, "ab", buffering=0)  # noqa: SIM115 (kept open)
            self._handles[place] = handle
        return handle

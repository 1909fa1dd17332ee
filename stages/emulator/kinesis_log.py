"""A Kinesis shard's records on disk: data and a fixed-size index entry per record, nothing per
record in memory.

moto keeps a ``Record`` per Kinesis record in a dict for the whole retention period (24 h unless
changed); even slotted, with its data in a file, that was memory per record, so the emulator
grew with the traffic of the last day. Here a shard's records are a contiguous run
of sequence numbers (moto numbers them consecutively) kept in segments, each a pair of unlinked
files under ``DATA_DIR/emulator``: the data (partition key, explicit hash key and payload, one
after the other) and an index of ``_ENTRY.size`` bytes per record (arrival time, offset, sizes).
A record is found by arithmetic, a GetRecords page is two reads per segment, AT_TIMESTAMP is a
binary search, and memory holds a few numbers per segment of up to ``files.SEGMENT_BYTES``.

A segment is dropped once the retention period has passed for all its records; its files close
(and, being unlinked, give their space back) when nothing refers to them any more, so a read in
progress never loses its file.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stages.emulator.files import AppendOnlyFile

# Arrival time (s), data offset, partition key length, explicit hash key length (NO_KEY: none),
# payload length.
_ENTRY = struct.Struct("<dqHHI")
NO_KEY = 0xFFFF
_SCAN_ENTRIES = 4096


class _Segment:
    __slots__ = ("count", "data", "first", "index")

    def __init__(self, first: int, directory: Path | None) -> None:
        self.first = first  # sequence number of its first record
        self.count = 0
        self.data = AppendOnlyFile(directory)
        self.index = AppendOnlyFile(directory)

    def entries(self, start: int, stop: int) -> list[tuple[float, int, int, int, int]]:
        """Index entries of positions ``start`` to ``stop`` (exclusive), in one read."""
        raw = self.index.read(start * _ENTRY.size, (stop - start) * _ENTRY.size)
        return list(_ENTRY.iter_unpack(raw))


class StoredRecord:
    """One record read back: what moto's ``Record`` offers GetRecords, MergeShards and tests.

    Setting ``created_at`` writes the index entry (tests move arrival times back in time).
    """

    __slots__ = (
        "_position",
        "_segment",
        "created_at",
        "explicit_hash_key",
        "partition_key",
        "raw_data",
        "sequence_number",
    )

    def __init__(
        self,
        segment: _Segment,
        position: int,
        entry: tuple[float, int, int, int, int],
        blob: bytes,
    ) -> None:
        created_at, _, key_length, hash_length, _ = entry
        self._segment = segment
        self._position = position
        self.sequence_number = segment.first + position
        self.partition_key = blob[:key_length].decode("utf-8")
        if hash_length == NO_KEY:
            self.explicit_hash_key: str | None = None
            self.raw_data = blob[key_length:]
        else:
            self.explicit_hash_key = blob[key_length : key_length + hash_length].decode("ascii")
            self.raw_data = blob[key_length + hash_length :]
        object.__setattr__(self, "created_at", created_at)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "created_at":
            entry = list(self._segment.entries(self._position, self._position + 1)[0])
            entry[0] = value
            self._segment.index.overwrite(self._position * _ENTRY.size, _ENTRY.pack(*entry))

    @property
    def _storage(self) -> Any:
        return self._segment.data

    @property
    def size(self) -> int:
        return len(self.raw_data)

    @property
    def created_at_datetime(self) -> datetime:
        # Naive UTC, as moto's utcnow() gives it.
        return datetime.fromtimestamp(self.created_at, UTC).replace(tzinfo=None)

    @property
    def data(self) -> str:
        from base64 import b64encode

        # moto's own paths (MergeShards re-puts records) expect the base64 text.
        return b64encode(self.raw_data).decode("ascii")

    def to_json(self) -> dict[str, Any]:
        return {
            "Data": self.raw_data,
            "PartitionKey": self.partition_key,
            "SequenceNumber": str(self.sequence_number),
            "ApproximateArrivalTimestamp": self.created_at_datetime,
        }


class RecordLog:
    """A shard's records, oldest first, read like moto's ``OrderedDict`` of sequence number to
    record (``len``, ``in``, ``[n]``, ``get``, iteration both ways, ``values``) and written only
    by ``append`` and ``expire``. The caller serialises writes (``kinesis_model``'s write lock)."""

    def __init__(self, directory: Path | None, segment_bytes: int) -> None:
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []
        self.first_live = 1  # the oldest record not expired
        self.last = 0  # the newest sequence number given out; numbering goes on after expiry

    # --- writing ----------------------------------------------------------------------------
    def append(
        self, partition_key: str, raw: bytes, explicit_hash_key: str | None, created_at: float
    ) -> int:
        key = partition_key.encode("utf-8")
        hash_key = b"" if explicit_hash_key is None else explicit_hash_key.encode("ascii")
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.data.size >= self._segment_bytes:
            segment = _Segment(self.last + 1, self._directory)
            self._segments.append(segment)
            self._firsts.append(segment.first)
        offset = segment.data.append(key + hash_key + raw)
        hash_length = NO_KEY if explicit_hash_key is None else len(hash_key)
        segment.index.append(_ENTRY.pack(created_at, offset, len(key), hash_length, len(raw)))
        segment.count += 1
        self.last += 1
        return self.last

    def expire(self, cutoff: float) -> int:
        """Drop the records that arrived before ``cutoff``, oldest first; returns how many."""
        expired = 0
        while self.first_live <= self.last:
            segment, position = self._locate(self.first_live)
            stop = min(segment.count, position + _SCAN_ENTRIES)
            entries = segment.entries(position, stop)
            old = next((i for i, e in enumerate(entries) if e[0] >= cutoff), len(entries))
            self.first_live += old
            expired += old
            if old < len(entries):
                break
        # A segment wholly expired goes, but not the one being written (unless all expired).
        while len(self._segments) > 1 and (
            self._segments[0].first + self._segments[0].count <= self.first_live
        ):
            self._segments.pop(0)
            self._firsts.pop(0)
        if self.first_live > self.last:
            # Everything expired: the current segment goes too, the next put starts a new one.
            self._segments.clear()
            self._firsts.clear()
        return expired

    # --- reading ----------------------------------------------------------------------------
    def view(self) -> RecordLog:
        """The records as they are now, readable without the write lock: later appends are not
        in it, and the segments it refers to stay open while it is read, expired or not."""
        view = RecordLog(self._directory, self._segment_bytes)
        view._segments = self._segments[:]
        view._firsts = self._firsts[:]
        view.first_live = self.first_live
        view.last = self.last
        return view

    def _locate(self, sequence: int) -> tuple[_Segment, int]:
        at = bisect.bisect_right(self._firsts, sequence) - 1
        segment = self._segments[at]
        return segment, sequence - segment.first

    def read(self, start: int, stop: int, max_bytes: int | None = None) -> list[StoredRecord]:
        """Records ``start`` to ``stop`` (inclusive, within the live ones), stopping once
        ``max_bytes`` of data and keys are gathered (at least one record)."""
        records: list[StoredRecord] = []
        size = 0
        sequence = max(start, self.first_live)
        while sequence <= min(stop, self.last):
            segment, position = self._locate(sequence)
            end = min(segment.count, position + (min(stop, self.last) - sequence) + 1)
            entries = segment.entries(position, end)
            if max_bytes is not None:
                for count, entry in enumerate(entries):
                    if size >= max_bytes:
                        entries = entries[:count]
                        break
                    size += entry[2] + entry[4]
            if not entries:
                break
            first_offset = entries[0][1]
            last = entries[-1]
            span = segment.data.read(first_offset, last[1] + _blob_length(last) - first_offset)
            for i, entry in enumerate(entries):
                begin = entry[1] - first_offset
                blob = span[begin : begin + _blob_length(entry)]
                records.append(StoredRecord(segment, position + i, entry, blob))
            sequence += len(entries)
            if max_bytes is not None and size >= max_bytes:
                break
        return records

    def created_at(self, sequence: int) -> float:
        segment, position = self._locate(sequence)
        return segment.entries(position, position + 1)[0][0]

    def last_before(self, timestamp: float) -> int | None:
        """The newest live sequence number that arrived before ``timestamp`` (arrival times
        only grow along a shard), or None."""
        low, high = self.first_live, self.last
        found = None
        while low <= high:
            middle = (low + high) // 2
            if self.created_at(middle) < timestamp:
                found = middle
                low = middle + 1
            else:
                high = middle - 1
        return found

    # --- the mapping moto reads -------------------------------------------------------------
    def __len__(self) -> int:
        return max(0, self.last - self.first_live + 1)

    def __bool__(self) -> bool:
        return self.last >= self.first_live

    def __contains__(self, sequence: object) -> bool:
        return isinstance(sequence, int) and self.first_live <= sequence <= self.last

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.first_live, self.last + 1))

    def __reversed__(self) -> Iterator[int]:
        return reversed(range(self.first_live, self.last + 1))

    def keys(self) -> range:
        return range(self.first_live, self.last + 1)

    def __getitem__(self, sequence: int) -> StoredRecord:
        if sequence not in self:
            raise KeyError(sequence)
        return self.read(sequence, sequence)[0]

    def get(self, sequence: int, default: Any = None) -> Any:
        if sequence not in self:
            return default
        return self[sequence]

    def values(self) -> Iterator[StoredRecord]:
        sequence = self.first_live
        while sequence <= self.last:
            page = self.read(sequence, min(self.last, sequence + 999))
            yield from page
            sequence += max(1, len(page))

    def items(self) -> Iterator[tuple[int, StoredRecord]]:
        for record in self.values():
            yield record.sequence_number, record


def _blob_length(entry: tuple[float, int, int, int, int]) -> int:
    hash_length = 0 if entry[3] == NO_KEY else entry[3]
    return entry[2] + hash_length + entry[4]

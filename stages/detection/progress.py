"""What detection has read of one service's buckets in ``telemetry.features``, independent of
the order the ETL wrote them in.

A time mark alone cannot say this: the ETL folds the current hours first and older hours later
(history generated on demand, a backfill, a late raw hour), so buckets older than the newest one
scored keep arriving. Progress is therefore three things, checkpointed with the model state:

- ``sequence``: the features table's snapshot sequence number up to which every data file has
  been read. Iceberg gives each data file the sequence number of the snapshot that added it, so
  the next read opens only the files added since (``reader.FeatureReader.read``).
- ``seen``: the buckets read, as merged time ranges ``[start, end)``: a data file that rewrites
  an hour (the ETL's delete + append of a partition, late records) brings buckets already read,
  which are not read again. Each bucket enters ``seen`` once: that is the exactly-once unit.
- ``pending``: the buckets that arrived behind the newest bucket scored and wait for a replay
  (``worker.DetectionWorker``), which learns them in time order.

``mark`` (the start of the newest bucket scored live) orders what is new: a bucket after it is
live and scored at once, one before it is history.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class Coverage:
    """A set of time instants stored as sorted, disjoint, non-adjacent ranges ``[start, end)``."""

    def __init__(self, ranges: Iterable[Iterable[float]] = ()) -> None:
        self._ranges: list[tuple[float, float]] = []
        for start, end in ranges:
            self.add(float(start), float(end))

    def add(self, start: float, end: float) -> None:
        if end <= start:
            return
        ranges = self._ranges
        # The first range that ends at or after ``start`` (it touches or follows the new one).
        i = bisect.bisect_left([r[1] for r in ranges], start)
        j = i
        while j < len(ranges) and ranges[j][0] <= end:
            start = min(start, ranges[j][0])
            end = max(end, ranges[j][1])
            j += 1
        ranges[i:j] = [(start, end)]

    def __contains__(self, instant: float) -> bool:
        i = bisect.bisect_right([r[0] for r in self._ranges], instant) - 1
        return i >= 0 and instant < self._ranges[i][1]

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Coverage) and self._ranges == other._ranges

    def __repr__(self) -> str:
        return f"Coverage({self._ranges!r})"

    @property
    def first(self) -> float | None:
        return self._ranges[0][0] if self._ranges else None

    def buckets(self, width: float) -> int:
        """How many buckets of ``width`` seconds the ranges hold (ranges are whole buckets)."""
        return sum(round((end - start) / width) for start, end in self._ranges)

    def to_list(self) -> list[list[float]]:
        return [[start, end] for start, end in self._ranges]


@dataclass(slots=True)
class Progress:
    """One service's progress besides its mark; see the module's opening lines."""

    sequence: int | None = None  # None: no data file read yet (or a checkpoint without it)
    seen: Coverage = field(default_factory=Coverage)
    pending: Coverage = field(default_factory=Coverage)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "seen": self.seen.to_list(),
            "pending": self.pending.to_list(),
        }

    @classmethod
    def restore(cls, mark: float | None, saved: dict[str, Any] | None, width: float) -> Progress:
        """From a checkpoint. One written without progress (by a release that kept a mark only)
        had read every bucket up to its mark: they are ``seen``, and the next read is a full one
        (no ``sequence``), which finds only the buckets after the mark or never read."""
        if saved is None:
            seen = Coverage() if mark is None else Coverage([(0.0, mark + width)])
            return cls(None, seen, Coverage())
        return cls(
            saved.get("sequence"),
            Coverage(saved.get("seen", ())),
            Coverage(saved.get("pending", ())),
        )

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
    """A set of time instants stored as sorted, disjoint, non-adjacent ranges ``[start, end)``.

    Live buckets come in order and extend the last range; each gap in the data is one range
    more."""

    def __init__(self, ranges: Iterable[Iterable[float]] = ()) -> None:
        self._starts: list[float] = []
        self._ends: list[float] = []
        for start, end in ranges:
            self.add(float(start), float(end))

    def add(self, start: float, end: float) -> None:
        if end <= start:
            return
        starts, ends = self._starts, self._ends
        if not ends or start > ends[-1]:  # the common case: after everything
            starts.append(start)
            ends.append(end)
            return
        # The ranges from the first that ends at or after ``start`` to the last that begins at
        # or before ``end`` touch the new one: they merge into it.
        i = bisect.bisect_left(ends, start)
        j = bisect.bisect_right(starts, end)
        if i < j:
            start = min(start, starts[i])
            end = max(end, ends[j - 1])
        starts[i:j] = [start]
        ends[i:j] = [end]

    def __contains__(self, instant: float) -> bool:
        i = bisect.bisect_right(self._starts, instant) - 1
        return i >= 0 and instant < self._ends[i]

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Coverage) and self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return f"Coverage({self.to_list()!r})"

    def first(self) -> float | None:
        """The earliest instant held, or None when empty."""
        starts = self._starts
        return starts[0] if starts else None

    def buckets(self, width: float) -> int:
        """How many buckets of ``width`` seconds the ranges hold (ranges are whole buckets)."""
        # Not strict: /api/status asks from another thread while ``add`` may be between its
        # two list updates; the count is then off by a range for that one answer.
        return sum(round((e - s) / width) for s, e in zip(self._starts, self._ends, strict=False))

    def to_list(self) -> list[list[float]]:
        return [[s, e] for s, e in zip(self._starts, self._ends, strict=True)]


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

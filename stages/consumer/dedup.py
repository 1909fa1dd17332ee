"""Dropping re-sent records per shard, so that the same decision is made after any crash.

Producers are at-least-once on one edge: a PutRecords that times out after Kinesis stored it is
sent again, and Ingestion's timeout-then-spool path can send a record that Kinesis got after all.
The copy has the same ``event_id`` and the same partition key (the record's service), so it lands
on the same shard, a little later. The consumer remembers the event ids of the shard's recent
records and drops a record whose id it has already seen.

"Recent" must mean the same thing to whoever reads the shard next, or a replay after a crash
would keep a record the first reader dropped (or the other way round) and write different
objects. So the window is defined by positions in the shard, stored with the checkpoint:

- each checkpointed flush adds a *mark*: the sequence number it ended at and how many records
  with an ``event_id`` were read in its range;
- the window is every record after ``base`` up to the checkpoint, plus the records read since;
- at each checkpoint the oldest marks are dropped (``base`` moves up to them) while the remaining
  ones still hold at least ``max_records`` records, and never more than ``MAX_MARKS`` are kept;
- a new owner reads the shard from ``base``, refills the window from (base, checkpoint] without
  writing anything, then goes on as the previous owner would have;
- with the window off (``max_records`` 0) the stored state is ignored and reading starts at the
  checkpoint; a pending range is replayed with the window size recorded with it (leases.py).

Limits: a copy further back than the window is kept (and then appears twice in S3), as is a copy
that lands on another shard (only if the stream was resharded in between). Ids are compared as
128-bit BLAKE2b digests.
"""

from __future__ import annotations

import hashlib
from collections import deque

from stages.common.shard_leases import Mark, WindowState

# Bounds the lease item (each mark is one sequence number and one count) and the re-read after a
# takeover when flushes are small.
MAX_MARKS = 64


def event_key(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=16).digest())


class DedupWindow:
    """The event ids of one shard's window: a count per id, and the ids of each checkpointed
    range in a list, so that dropping a range takes its ids back out.

    An id is counted once per time it was read (a re-sent copy included), and taken back once
    per time when its range is dropped: an id is in the window while its count is above zero.
    Besides the id's own integer, one dict and plain lists take less memory per id than a set
    per range would.
    """

    def __init__(self, state: WindowState, max_records: int) -> None:
        self.max_records = max_records
        # Disabled, the window is empty and starts at the checkpoint: starting at the stored
        # base would read checkpointed records again with nothing to tell them from new ones.
        self.state = state if max_records > 0 else WindowState(_checkpoint(state))
        self._ranges: deque[list[int]] = deque([] for _ in self.state.marks)
        self._counts: dict[int, int] = {}  # id -> times read in the window
        self._current: list[int] = []  # ids read since the last checkpoint

    @property
    def enabled(self) -> bool:
        return self.max_records > 0

    @property
    def refill_until(self) -> str | None:
        """Records up to this sequence number only refill the window (None: nothing to refill)."""
        return self.state.marks[-1].sequence if self.state.marks else None

    def refill(self, sequence: str, keys: list[int]) -> None:
        """Put the ids of an already checkpointed record back into its range."""
        position = int(sequence)
        for index, mark in enumerate(self.state.marks):
            if position <= int(mark.sequence):
                self._ranges[index].extend(keys)
                self._count(keys)
                return

    def resize(self, max_records: int) -> None:
        """Go on with another size, right after a checkpoint; 0 empties the window."""
        self.max_records = max_records
        if max_records == 0:
            self.state = WindowState(_checkpoint(self.state))
            self._ranges.clear()
            self._counts.clear()
            self._current = []

    def seen_before(self, key: int) -> bool:
        """Whether ``key`` is in the window already; either way it is in it afterwards."""
        if not self.enabled:
            return False
        counts = self._counts
        seen = key in counts
        # A copy is recorded in this range too, so that it outlives the range of the original
        # exactly as it does in a window refilled from the shard (which records every id).
        counts[key] = counts.get(key, 0) + 1
        self._current.append(key)
        return seen

    def close(self, sequence: str) -> WindowState:
        """The records read so far were checkpointed at ``sequence``: the state to store."""
        if not self.enabled:
            self.state = WindowState(sequence)
            return self.state
        marks = [*self.state.marks, Mark(sequence, len(self._current))]
        self._ranges.append(self._current)
        self._current = []
        base = self.state.base
        held = sum(mark.records for mark in marks)
        while len(marks) > 1 and (
            len(marks) > MAX_MARKS or held - marks[0].records >= self.max_records
        ):
            dropped = marks.pop(0)
            held -= dropped.records
            base = dropped.sequence
            self._uncount(self._ranges.popleft())
        self.state = WindowState(base, tuple(marks))
        return self.state

    def _count(self, keys: list[int]) -> None:
        counts = self._counts
        for key in keys:
            counts[key] = counts.get(key, 0) + 1

    def _uncount(self, keys: list[int]) -> None:
        counts = self._counts
        for key in keys:
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]

    def __len__(self) -> int:
        """Distinct ids in the window."""
        return len(self._counts)


def _checkpoint(state: WindowState) -> str:
    """The position a stored window ends at: the checkpoint it was written with."""
    return state.marks[-1].sequence if state.marks else state.base

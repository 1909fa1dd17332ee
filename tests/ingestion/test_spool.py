"""The on-disk spool: order, offsets, segment removal, torn lines, limits, restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.ingestion.spool import Spool, SpoolFull


def _lines(start: int, count: int) -> list[bytes]:
    return [b'{"n": %d}\n' % i for i in range(start, start + count)]


def _drain_all(spool: Spool, chunk: int = 7) -> list[bytes]:
    out = []
    while (part := spool.oldest_chunk(chunk)) is not None:
        out += part.lines
        spool.commit(part)
    return out


def test_drains_in_order_across_segments_and_removes_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1024 * 1024, segment_bytes=100)
    for n in range(0, 50, 5):
        spool.append(_lines(n, 5))
    assert spool.segment_count() > 3
    assert _drain_all(spool) == _lines(0, 50)
    assert spool.pending_bytes() == 0
    assert list(tmp_path.iterdir()) == []


def test_a_segment_number_is_never_reused_while_the_spool_is_open(tmp_path: Path) -> None:
    """The drainer knows a chunk by (segment, start); a reused number once made it take a new
    segment's first chunk for the one it had just sent, and skip those records."""
    spool = Spool(tmp_path, 1024 * 1024)
    spool.append(_lines(0, 3))
    first = spool.oldest_chunk(10)
    assert first is not None
    spool.commit(first)
    assert spool.segment_count() == 0
    spool.append(_lines(3, 3))
    second = spool.oldest_chunk(10)
    assert second is not None and second.lines == _lines(3, 3)
    assert (second.segment, second.start) != (first.segment, first.start)


def test_uncommitted_chunk_is_read_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1024 * 1024)
    spool.append(_lines(0, 10))
    first = spool.oldest_chunk(4)
    assert first is not None and first.lines == _lines(0, 4)
    again = spool.oldest_chunk(4)
    assert again == first  # not committed: Kinesis has not acknowledged it
    spool.commit(first)
    second = spool.oldest_chunk(100)
    assert second is not None and second.lines == _lines(4, 6)


def test_restart_resumes_at_the_committed_offset(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1024 * 1024)
    spool.append(_lines(0, 10))
    chunk = spool.oldest_chunk(3)
    assert chunk is not None
    spool.commit(chunk)

    reopened = Spool(tmp_path, 1024 * 1024)
    assert reopened.pending_bytes() == sum(map(len, _lines(3, 7)))
    reopened.append(_lines(10, 2))
    assert _drain_all(reopened) == _lines(3, 9)


def test_a_torn_last_line_is_never_drained(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1024 * 1024)
    spool.append(_lines(0, 2))
    segment = next(tmp_path.glob("seg-*.jsonl"))
    with open(segment, "ab") as handle:
        handle.write(b'{"n": 99')  # a crash mid-append
    reopened = Spool(tmp_path, 1024 * 1024)
    reopened.append(_lines(2, 1))
    assert _drain_all(reopened) == _lines(0, 3)
    assert reopened.pending_bytes() == 0


def test_full_spool_refuses_the_whole_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1024 * 1024)
    big = [b"x" * 1000 + b"\n"] * 1000
    spool.append(big)
    before = spool.pending_bytes()
    with pytest.raises(SpoolFull, match="SPOOL_MAX_BYTES"):
        spool.append(big[:100])
    assert spool.pending_bytes() == before
    assert not spool.has_room(100_000)

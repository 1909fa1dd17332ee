"""The on-disk spool: order, offsets, segment removal, torn lines, limits, restart."""

from __future__ import annotations

import re
import subprocess
import sys
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


# Runs the spool in a child process under strace: which names it creates, renames and removes in
# its directory, and when it fsyncs that directory. Each step ends with a marker on stdout, the
# moment the call returns to its caller (an append's 2xx, a chunk counted as drained).
_TRACED_SPOOL = """
import os, sys
from pathlib import Path
from stages.ingestion.spool import Spool

def step(name):
    os.write(1, f"@{name}\\n".encode())

lines = [b'{"n": %d}\\n' % i for i in range(20)]
spool = Spool(Path(sys.argv[1]), 1024 * 1024, segment_bytes=60)
step("open")
spool.append(lines[:5])
step("append-first")
spool.append(lines[5:10])
step("append-second")
chunk = spool.oldest_chunk(2)
spool.commit(chunk)
step("commit-part")
while (chunk := spool.oldest_chunk(100)) is not None:
    spool.commit(chunk)
    step("commit-rest")
"""

_SYSCALL = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")


def _traced_events(spool_dir: Path, tmp_path: Path) -> list[tuple[str, str]]:
    """(what, path) in order: mkdir, create, rename, unlink, fsync-dir and step markers."""
    trace = tmp_path / "strace.txt"
    subprocess.run(
        [
            "strace",
            "-f",
            "-y",
            "-s",
            "200",
            "-o",
            str(trace),
            "-e",
            "trace=mkdir,mkdirat,openat,rename,renameat,renameat2,unlink,unlinkat,fsync,write",
            sys.executable,
            "-c",
            _TRACED_SPOOL,
            str(spool_dir),
        ],
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
    )
    events: list[tuple[str, str]] = []
    for line in trace.read_text().splitlines():
        match = _SYSCALL.match(line)
        if not match or int(match.group(3)) < 0:
            continue
        call, args = match.group(1), match.group(2)
        paths = re.findall(r'"([^"]*)"', args)
        if call == "write" and args.startswith("1<") and paths and paths[0].startswith("@"):
            events.append(("step", paths[0][1:].replace("\\n", "")))
        elif call in ("mkdir", "mkdirat") and paths:
            events.append(("mkdir", paths[-1]))
        elif call == "openat" and "O_CREAT" in args and paths:
            events.append(("create", paths[0]))
        elif call.startswith("rename") and len(paths) == 2:
            events.append(("rename", paths[1]))
        elif call in ("unlink", "unlinkat") and paths:
            events.append(("unlink", paths[-1]))
        elif call == "fsync":
            fd_path = re.match(r"\d+<(.*)>", args)
            if fd_path and Path(fd_path.group(1)).is_dir():
                events.append(("fsync-dir", fd_path.group(1)))
    return events


def test_every_name_change_in_the_spool_is_made_durable_before_the_call_returns(
    tmp_path: Path,
) -> None:
    """Power loss: an fsynced file whose directory entry was never fsynced can vanish, so an
    acknowledged append (a new segment) or a committed offset (a rename) would be lost."""
    spool_dir = (tmp_path / "data" / "spool").resolve()
    events = _traced_events(spool_dir, tmp_path)
    steps = [what for kind, what in events if kind == "step"]
    assert steps[:4] == ["open", "append-first", "append-second", "commit-part"], events

    changes: list[tuple[str, str]] = []  # in a directory, not yet followed by its fsync
    seen: set[str] = set()
    for kind, path in events:
        parent = str(Path(path).parent)
        if kind == "mkdir" and path == str(spool_dir):
            changes.append((kind, path))
        elif kind in ("create", "rename", "unlink") and parent == str(spool_dir):
            if not path.endswith(".tmp"):  # a temporary name is made durable by its rename
                changes.append((kind, path))
        elif kind == "fsync-dir":
            changes = [(k, p) for k, p in changes if str(Path(p).parent) != path]
        elif kind == "step":
            assert changes == [], f"not durable when {path!r} returned: {changes}"
        if kind == "unlink" and parent == str(spool_dir):
            # A segment goes only once the offset that says it is drained is durable.
            assert not any(k == "rename" for k, _ in changes), f"unlink before fsync: {changes}"
        seen.add(kind)
    assert {"mkdir", "create", "rename", "unlink", "fsync-dir"} <= seen, events
    assert list(spool_dir.iterdir()) == []


def test_an_offset_file_left_without_its_segment_is_removed_on_open(tmp_path: Path) -> None:
    """A crash between unlinking a drained segment and its offset file leaves the offset; after
    a restart a new segment can get that number and must not start at the old offset."""
    spool = Spool(tmp_path, 1024 * 1024)
    spool.append(_lines(0, 10))
    chunk = spool.oldest_chunk(10)
    assert chunk is not None
    spool.commit(chunk)
    (tmp_path / "seg-000000000001.offset").write_text(str(chunk.end - 5))

    reopened = Spool(tmp_path, 1024 * 1024)
    reopened.append(_lines(10, 10))
    assert _drain_all(reopened) == _lines(10, 10)

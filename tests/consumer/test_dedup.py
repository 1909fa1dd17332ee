"""The duplicate window: what it drops, how far back it reaches, and that a new owner rebuilt
from the lease decides exactly as the old one would have."""

from __future__ import annotations

import random
import time
from pathlib import Path

from stages.common import aws
from stages.common.config import Settings
from stages.consumer.dedup import MAX_MARKS, DedupWindow, Mark, WindowState, event_key
from stages.consumer.leases import DynamoLeaseStore
from tests.support.lake import (
    ConsumerProcess,
    assert_exactly_once,
    make_record,
    put_aggregated,
    put_plain,
    wait_for_lines,
)

LOGS = "stage01-logs-stream"


def _feed(window: DedupWindow, ids: list[str]) -> list[bool]:
    return [window.seen_before(event_key(i)) for i in ids]


def test_a_copy_is_dropped_within_the_range_and_across_checkpoints() -> None:
    window = DedupWindow(WindowState("TRIM_HORIZON"), max_records=100)
    assert _feed(window, ["a", "b", "a"]) == [False, False, True]
    state = window.close("3")
    assert state.marks[-1].sequence == "3" and state.marks[-1].records == 3
    assert _feed(window, ["b", "c"]) == [True, False]


def test_the_window_forgets_ranges_once_newer_ones_hold_enough_records() -> None:
    window = DedupWindow(WindowState("TRIM_HORIZON"), max_records=4)
    _feed(window, ["old-1", "old-2"])
    window.close("10")
    _feed(window, ["n1", "n2", "n3", "n4"])
    state = window.close("20")
    # The newest range alone holds 4 records: the older one left the window.
    assert state.base == "10" and [m.sequence for m in state.marks] == ["20"]
    assert _feed(window, ["old-1", "n1"]) == [False, True]


def test_a_copy_keeps_its_id_in_the_window_until_the_copys_own_range_is_dropped() -> None:
    window = DedupWindow(WindowState("TRIM_HORIZON"), max_records=2)
    assert _feed(window, ["a", "b"]) == [False, False]
    window.close("2")
    assert _feed(window, ["a", "c"]) == [True, False]  # the copy is read in the second range
    state = window.close("4")
    assert state.base == "2"  # the first range (the original "a") left the window ...
    assert _feed(window, ["a", "b"]) == [True, False]  # ... the copy's range still holds "a"
    window.close("6")
    assert len(window) == 2  # "a" and "b", read in the one range left
    assert _feed(window, ["c"]) == [False]


def test_the_number_of_marks_is_bounded() -> None:
    window = DedupWindow(WindowState("TRIM_HORIZON"), max_records=10**6)
    for n in range(MAX_MARKS + 10):
        _feed(window, [f"id-{n}"])
        state = window.close(str(n + 1))
    assert len(state.marks) == MAX_MARKS
    assert state.base == "10"


def test_disabled_window_keeps_everything() -> None:
    window = DedupWindow(WindowState("TRIM_HORIZON"), max_records=0)
    assert _feed(window, ["a", "a"]) == [False, False]
    assert window.close("5") == WindowState("5")


def test_a_disabled_window_starts_at_the_checkpoint_not_at_the_stored_base() -> None:
    """A window switched off after a run with it on: the records up to the checkpoint are in
    the lake already, and nothing would mark them as a refill if they were read again."""
    stored = WindowState("10", (Mark("20", 5), Mark("30", 5)))
    window = DedupWindow(stored, max_records=0)
    assert window.state == WindowState("30")
    assert window.refill_until is None


def test_resizing_to_zero_after_a_checkpoint_forgets_the_window() -> None:
    window = DedupWindow(WindowState("TRIM_HORIZON"), max_records=100)
    _feed(window, ["a", "b"])
    window.close("2")
    window.resize(0)
    assert window.state == WindowState("2") and len(window) == 0
    assert _feed(window, ["a"]) == [False]
    window.resize(100)
    assert _feed(window, ["b", "b"]) == [False, True]
    assert window.close("4") == WindowState("2", (Mark("4", 2),))


def test_a_window_rebuilt_from_the_stored_state_decides_like_the_original() -> None:
    """Replays a stream of ids with random re-sends; at every checkpoint a second window is
    rebuilt from the state alone (as a new lease owner does) and must agree on what follows."""
    rng = random.Random(3)
    stream: list[str] = []
    for n in range(3_000):
        stream.append(f"id-{n}")
        if rng.random() < 0.2:
            stream.append(f"id-{max(0, n - rng.randint(0, 400))}")
    original = DedupWindow(WindowState("TRIM_HORIZON"), max_records=300)
    sequence = 0
    checkpoints: list[tuple[WindowState, int]] = []
    decisions: list[bool] = []
    while sequence < len(stream):
        size = rng.randint(1, 120)
        decisions += _feed(original, stream[sequence : sequence + size])
        sequence = min(len(stream), sequence + size)
        checkpoints.append((original.close(str(sequence)), sequence))
    assert 0 < sum(decisions) < len(decisions)
    ends = [position for _, position in checkpoints]
    for n, (state, position) in enumerate(checkpoints[:-1]):
        rebuilt = DedupWindow(state, max_records=300)
        start = 0 if state.base == "TRIM_HORIZON" else int(state.base)
        for seq in range(start + 1, position + 1):  # sequence numbers are 1-based positions
            rebuilt.refill(str(seq), [event_key(stream[seq - 1])])
        # From there on it sees the same records and checkpoints as the original did.
        again: list[bool] = []
        for begin, end in zip(ends[n:], ends[n + 1 :], strict=False):
            again += _feed(rebuilt, stream[begin:end])
            assert rebuilt.close(str(end)) == checkpoints[ends.index(end)][0]
        assert again == decisions[position:]


def _dropped_eventually(consumer: ConsumerProcess, expected: float) -> float:
    deadline = time.monotonic() + 30
    while (dropped := consumer.metric("consumer_duplicates_dropped_total")) < expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return dropped


def test_the_consumer_writes_resent_records_once_and_counts_them(
    endpoint: str, settings: Settings, proc_logs: Path
) -> None:
    """Copies a few flushes apart, plain and aggregated, across a SIGKILL and a new owner."""
    s3 = aws.client("s3", settings)
    kinesis = aws.client("kinesis", settings)
    store = DynamoLeaseStore(aws.client("dynamodb", settings), settings.lease_table)
    env = {"CONSUMER_STREAMS": "logs", "FLUSH_MAX_RECORDS": "200", "LEASE_DURATION_SECONDS": "2"}
    sent = [make_record(i) for i in range(3_000)]
    consumer = ConsumerProcess(endpoint, proc_logs, **env)
    try:
        consumer.wait_healthy()
        put_plain(kinesis, LOGS, sent[:1_500])
        put_aggregated(kinesis, LOGS, sent[1_000:1_200], per_aggregate=40)  # 200 copies
        wait_for_lines(s3, "md-raw-logs", 1_500, timeout=60, proc=consumer)
        assert _dropped_eventually(consumer, 200) == 200
        consumer.kill()
        # The next owner must rebuild the window from the lease to recognise these.
        put_plain(kinesis, LOGS, sent[1_300:1_500] + sent[1_500:])  # 200 more copies
        consumer = ConsumerProcess(endpoint, proc_logs, **env)
        consumer.wait_healthy()
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=60, proc=consumer)
        time.sleep(1.5)  # a late copy would land within a flush age
        lines = wait_for_lines(s3, "md-raw-logs", len(sent), timeout=5, proc=consumer)
        assert_exactly_once(lines, sent)
        assert _dropped_eventually(consumer, 200) == 200
        assert consumer.health()["duplicates_dropped"] == 200
        # Both shards' leases carry the window the next owner will rebuild.
        windows = [lease.window for lease in store.list()]
        assert all(w is not None and w.marks for w in windows), windows
    finally:
        consumer.stop()

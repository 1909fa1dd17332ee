"""The lease contract, held by both stores: DynamoDB (on the emulator) and in-memory."""

from __future__ import annotations

import pytest

from stages.common import aws
from stages.common.config import Settings
from stages.consumer.dedup import Mark, WindowState
from stages.consumer.leases import (
    SHARD_END,
    TRIM_HORIZON,
    DynamoLeaseStore,
    InMemoryLeaseStore,
    LeaseLost,
    LeaseStore,
)


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest) -> LeaseStore:
    if request.param == "memory":
        return InMemoryLeaseStore()
    settings: Settings = request.getfixturevalue("settings")
    return DynamoLeaseStore(aws.client("dynamodb", settings), settings.lease_table)


def _only(store: LeaseStore):
    (lease,) = store.list()
    return lease


def test_create_is_idempotent_and_keeps_parents(store: LeaseStore) -> None:
    assert store.create_if_missing("s", "shard-2", ("shard-0", "shard-1"))
    assert not store.create_if_missing("s", "shard-2", ())
    lease = _only(store)
    assert lease.parents == ("shard-0", "shard-1")
    assert lease.checkpoint == TRIM_HORIZON
    assert lease.owner is None


def test_take_is_compare_and_set(store: LeaseStore) -> None:
    store.create_if_missing("s", "shard-0", ())
    seen = _only(store)
    first = store.take(seen, "worker-a")
    assert first is not None and first.owner == "worker-a"
    # A second worker acting on the same stale view must fail, not also win.
    assert store.take(seen, "worker-b") is None
    assert _only(store).owner == "worker-a"
    # With a fresh view it can take the lease over, and the old owner's writes are refused.
    assert store.take(_only(store), "worker-b") is not None
    with pytest.raises(LeaseLost):
        store.renew(seen.key, "worker-a")
    with pytest.raises(LeaseLost):
        store.checkpoint(seen.key, "worker-a", "42")
    with pytest.raises(LeaseLost):
        store.set_pending(seen.key, "worker-a", "42")


def test_renew_moves_the_counter(store: LeaseStore) -> None:
    store.create_if_missing("s", "shard-0", ())
    taken = store.take(_only(store), "w")
    assert taken is not None
    store.renew(taken.key, "w")
    store.renew(taken.key, "w")
    assert _only(store).counter == taken.counter + 2


def test_pending_range_survives_takeover_and_checkpoint_clears_it(store: LeaseStore) -> None:
    store.create_if_missing("s", "shard-0", ())
    taken = store.take(_only(store), "a")
    assert taken is not None
    store.set_pending(taken.key, "a", "100")
    # The new owner sees the unfinished flush in what take() returns.
    stolen = store.take(_only(store), "b")
    assert stolen is not None and stolen.pending_end == "100"
    assert stolen.checkpoint == TRIM_HORIZON
    store.checkpoint(taken.key, "b", "100")
    lease = _only(store)
    assert lease.checkpoint == "100" and lease.pending_end is None


def test_how_a_pending_range_was_cut_is_handed_over_and_cleared_by_the_checkpoint(
    store: LeaseStore,
) -> None:
    store.create_if_missing("s", "shard-0", ())
    taken = store.take(_only(store), "a")
    assert taken is not None
    store.set_pending(taken.key, "a", "100", "gzip", 5_000)
    stolen = store.take(_only(store), "b")
    assert stolen is not None and stolen.pending_end == "100"
    assert (stolen.pending_compression, stolen.pending_window_records) == ("gzip", 5_000)
    # The replay records the range again; a disabled window is recorded as 0, not as unknown.
    store.set_pending(stolen.key, "b", "100", "gzip", 0)
    assert _only(store).pending_window_records == 0
    store.checkpoint(stolen.key, "b", "100")
    lease = _only(store)
    assert (lease.pending_end, lease.pending_compression, lease.pending_window_records) == (
        None,
        None,
        None,
    )


def test_the_duplicate_window_is_stored_with_the_checkpoint_and_handed_over(
    store: LeaseStore,
) -> None:
    store.create_if_missing("s", "shard-0", ())
    taken = store.take(_only(store), "a")
    assert taken is not None and taken.window is None
    window = WindowState("40", (Mark("70", 12), Mark("100", 30)))
    store.checkpoint(taken.key, "a", "100", window)
    stolen = store.take(_only(store), "b")
    assert stolen is not None and stolen.window == window and stolen.checkpoint == "100"
    # A checkpoint written without a window (the shard's end) drops the stale one.
    store.checkpoint(taken.key, "b", SHARD_END)
    assert _only(store).window is None


def test_release_frees_the_lease_and_shard_end_is_recorded(store: LeaseStore) -> None:
    store.create_if_missing("s", "shard-0", ())
    taken = store.take(_only(store), "a")
    assert taken is not None
    store.mark_started(taken.key, "a")
    store.release(taken.key, "a")
    assert _only(store).owner is None
    again = store.take(_only(store), "b")
    assert again is not None
    store.checkpoint(again.key, "b", SHARD_END)
    lease = _only(store)
    assert lease.finished and lease.finished_at_ms is not None and lease.started_at_ms is not None

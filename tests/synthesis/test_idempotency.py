"""The idempotency ledger on its own: key reuse, expiry, its bounds, attempts that overlap."""

from __future__ import annotations

import threading

import pytest

from stages.common.errors import Unavailable
from stages.synthesis.idempotency import (
    KeyedRequest,
    KeyInProgress,
    KeyReused,
    RequestLedger,
    fingerprint,
)
from stages.synthesis.schemas import SynthesizeRequest
from stages.synthesis.telemetry import STATS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _request(count: int = 10) -> SynthesizeRequest:
    return SynthesizeRequest(count=count, seed=1, forward=True, return_records=False)


def test_attempts_with_one_key_share_what_was_forwarded() -> None:
    ledger = RequestLedger()
    with ledger.claim("a", _request()) as entry:
        entry.forwarded = 4
    with ledger.claim("a", _request()) as again:
        assert again.forwarded == 4
    with ledger.claim("b", _request()) as other:
        assert other.forwarded == 0


def test_a_key_reused_for_another_request_is_refused() -> None:
    ledger = RequestLedger()
    with ledger.claim("a", _request(10)):
        pass
    with pytest.raises(KeyReused, match="different request"), ledger.claim("a", _request(11)):
        pass


def test_keys_are_forgotten_after_their_time_to_live() -> None:
    clock = Clock()
    ledger = RequestLedger(ttl_seconds=60, clock=clock)
    with ledger.claim("a", _request(10)) as entry:
        entry.forwarded = 4
    clock.now += 59
    with ledger.claim("a", _request(10)) as entry:
        assert entry.forwarded == 4
    clock.now += 2
    with ledger.claim("a", _request(11)) as entry:  # a new request now, not a reuse
        assert entry.forwarded == 0


def _finish(entry: KeyedRequest) -> None:
    entry.finished = True


def test_at_its_bound_the_ledger_forgets_the_oldest_finished_request() -> None:
    ledger = RequestLedger(max_keys=3)
    with ledger.claim("a", _request()) as entry:
        entry.forwarded = 3  # unfinished: a retry may still come
    for key in "bc":
        with ledger.claim(key, _request()) as entry:
            _finish(entry)
    with ledger.claim("d", _request()):
        pass
    assert len(ledger) == 3
    with ledger.claim("a", _request()) as entry:  # the oldest, but unfinished: kept
        assert entry.forwarded == 3
    with ledger.claim("b", _request(11)) as entry:  # the oldest finished: forgotten
        assert not entry.finished


def test_when_every_kept_request_is_unfinished_a_new_key_waits_503() -> None:
    ledger = RequestLedger(max_keys=2)
    for key in "ab":
        with ledger.claim(key, _request()) as entry:
            entry.forwarded = 3  # a retry may still come for these
    with pytest.raises(Unavailable, match="unfinished") as refused, ledger.claim("c", _request()):
        pass
    assert refused.value.status_code == 503 and refused.value.headers["Retry-After"] == "1"
    with ledger.claim("a", _request()) as entry:  # the kept ones are intact
        assert entry.forwarded == 3


def test_unsent_records_are_bounded_dropping_the_oldest_keys_first() -> None:
    ledger = RequestLedger(max_unsent_records=10)
    records = [{"event_id": str(i)} for i in range(8)]
    with ledger.claim("old", _request()) as old:
        ledger.keep_unsent(old, records[:6])
    with ledger.claim("new", _request()) as new:
        ledger.keep_unsent(new, records[6:])
    assert ledger.unsent_records == 8 and old.unsent == records[:6]
    with ledger.claim("newest", _request()) as newest:
        ledger.keep_unsent(newest, [{"event_id": str(i)} for i in range(5)])
    # 13 > 10: the oldest key's six are dropped (a retry under it makes new records)
    assert old.unsent == [] and new.unsent == records[6:] and len(newest.unsent) == 5
    assert ledger.unsent_records == 7
    ledger.keep_unsent(newest, [])  # sent at last
    assert ledger.unsent_records == 2


def test_records_kept_for_a_forgotten_key_are_counted_as_dropped() -> None:
    ledger = RequestLedger(max_keys=1)
    with ledger.claim("a", _request()) as first:
        _finish(first)
    before = STATS.snapshot().get("unsent_records_dropped", 0)
    entry = ledger._entry("a", fingerprint(_request()))
    with ledger.claim("b", _request()):  # forgets the finished "a"
        pass
    ledger.keep_unsent(entry, [{"event_id": "1"}, {"event_id": "2"}])
    assert entry.unsent == [] and ledger.unsent_records == 0
    assert STATS.snapshot()["unsent_records_dropped"] == before + 2


def test_an_expired_key_is_kept_while_an_attempt_holds_it() -> None:
    clock = Clock()
    ledger = RequestLedger(ttl_seconds=60, clock=clock)
    with ledger.claim("a", _request()) as entry:
        entry.forwarded = 2
        clock.now += 61
        with ledger.claim("b", _request()):
            pass
        assert len(ledger) == 2  # "a" is busy, so not forgotten
    with ledger.claim("c", _request()):  # "a" is idle now: forgotten
        pass
    assert len(ledger) == 2
    with ledger.claim("a", _request()) as again:
        assert again is not entry and again.forwarded == 0


def test_an_expired_key_takes_its_unsent_records_with_it() -> None:
    clock = Clock()
    ledger = RequestLedger(ttl_seconds=60, clock=clock)
    with ledger.claim("a", _request()) as entry:
        ledger.keep_unsent(entry, [{"event_id": "1"}])
    clock.now += 61
    with ledger.claim("b", _request()):
        pass
    assert ledger.unsent_records == 0 and len(ledger) == 1


def test_an_attempt_waits_for_the_running_one_then_gives_up_with_409() -> None:
    ledger = RequestLedger(wait_seconds=0.2)
    holding, release = threading.Event(), threading.Event()

    def first_attempt() -> None:
        with ledger.claim("a", _request()) as entry:
            holding.set()
            release.wait(5)
            entry.forwarded = 10

    thread = threading.Thread(target=first_attempt)
    thread.start()
    try:
        assert holding.wait(5)
        with (
            pytest.raises(KeyInProgress, match="still running") as refused,
            ledger.claim("a", _request()),
        ):
            pass
        assert refused.value.status_code == 409 and refused.value.headers["Retry-After"] == "1"
    finally:
        release.set()
        thread.join()
    with ledger.claim("a", _request()) as entry:  # after it ended: its outcome
        assert entry.forwarded == 10

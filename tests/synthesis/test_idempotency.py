"""The idempotency ledger on its own: key reuse, expiry, its bound, attempts that overlap."""

from __future__ import annotations

import threading

import pytest

from stages.synthesis.idempotency import KeyInProgress, KeyReused, RequestLedger
from stages.synthesis.schemas import SynthesizeRequest


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


def test_the_ledger_keeps_at_most_max_keys_dropping_the_oldest() -> None:
    ledger = RequestLedger(max_keys=3)
    for key in "abcd":
        with ledger.claim(key, _request()) as entry:
            entry.forwarded = 1
    assert len(ledger) == 3
    with ledger.claim("a", _request()) as entry:  # the oldest was dropped
        assert entry.forwarded == 0
    with ledger.claim("d", _request()) as entry:
        assert entry.forwarded == 1


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

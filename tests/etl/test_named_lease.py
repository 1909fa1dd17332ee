"""The generic named lease on the emulator's DynamoDB: one holder, expiry, fencing tokens."""

from __future__ import annotations

import time

import pytest

from stages.common import aws
from stages.common.config import Settings
from stages.common.named_lease import LeaseLost, NamedLease

# Long enough that b's look and a's renewal come well inside a's lease on a loaded machine
# (with 1 s, a pause between a.acquire() and b.acquire() could outlast it), short enough to
# wait out.
LEASE_SECONDS = 3.0


def _lease(settings: Settings, owner: str, seconds: float = LEASE_SECONDS) -> NamedLease:
    db = aws.client("dynamodb", settings)
    return NamedLease(db, settings.etl_lease_table, "job", owner, seconds)


def test_one_holder_expiry_takeover_and_fencing(settings: Settings) -> None:
    a, b = _lease(settings, "a"), _lease(settings, "b")
    assert a.acquire()
    assert a.fence == 1 and a.held()
    assert not b.acquire()
    assert b.fence is None
    assert a.acquire()  # a renewal keeps the token
    assert a.fence == 1

    time.sleep(LEASE_SECONDS + 0.2)
    assert not a.held()
    assert b.acquire()
    assert b.fence == 2
    state = b.read()
    assert state is not None and (state.owner, state.fence) == ("b", 2)
    with pytest.raises(LeaseLost):
        a.renew()
    assert a.fence is None

    b.release()
    c = _lease(settings, "c")
    assert c.acquire()  # released: taken at once, not after the expiry
    assert c.fence == 3


def test_a_restarted_owner_takes_its_lease_back_with_a_new_token(settings: Settings) -> None:
    first = _lease(settings, "same", seconds=30)
    assert first.acquire()
    again = _lease(settings, "same", seconds=30)
    assert again.acquire()
    assert again.fence == 2
    with pytest.raises(LeaseLost):
        first.renew()

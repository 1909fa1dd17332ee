"""Entities from the State Manager: ids, states, locked accounts, and the fallback."""

from __future__ import annotations

import json

import httpx

from stages.synthesis.entity_pool import StateSync
from stages.synthesis.telemetry import STATE_UNAVAILABLE
from tests.synthesis.helpers import make

ACCOUNTS = [
    {"id": f"acct-{i}", "type": "account", "state": "active", "attributes": {"owner": f"user-{i}"}}
    for i in range(5)
]
USERS = [{"id": f"user-{i}", "type": "user", "state": "active", "attributes": {}} for i in range(5)]


def _state_manager(states: dict[str, str], calls: list[str]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/api/entities":
            items = ACCOUNTS if request.url.params["type"] == "account" else USERS
            return httpx.Response(200, json={"items": items, "total": len(items)})
        if request.url.path == "/api/entities/bulk-state":
            ids = json.loads(request.content)["ids"]
            return httpx.Response(200, json={i: states.get(i, "active") for i in ids})
        return httpx.Response(404)

    return httpx.Client(base_url="http://state", transport=httpx.MockTransport(handle))


def test_ids_come_from_the_state_manager_and_locked_accounts_are_denied() -> None:
    calls: list[str] = []
    sync = StateSync(_state_manager({"acct-3": "locked"}, calls))
    sync.refresh(0.0)
    assert sync.reachable is True and sync.pool.source == "state-manager"
    sync.refresh(2.0)  # a state refresh, not a new listing
    assert calls.count("/api/entities/bulk-state") == 1
    assert sync.pool.states["acct-3"] == "locked"
    records = make(sync.pool, count=400, kinds=["log"], log_types=["authentication_log"]).records
    assert {r["attributes"]["account.id"] for r in records} <= {a["id"] for a in ACCOUNTS}
    for record in records:  # each account's records name its owner
        assert record["attributes"]["user.id"] == record["attributes"]["account.id"].replace(
            "acct", "user"
        )
    locked = [r for r in records if r["attributes"]["account.id"] == "acct-3"]
    assert locked
    for record in locked:
        assert record["attributes"]["outcome"] == "denied"
        assert record["attributes"]["failure_reason"] == "account_locked"
        assert record["level"] == "WARN"
    others = [r for r in records if r["attributes"]["account.id"] != "acct-3"]
    assert all(r["attributes"]["failure_reason"] != "account_locked" for r in others)


def test_unreachable_state_manager_falls_back_and_is_counted() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.Client(base_url="http://state", transport=httpx.MockTransport(refuse))
    sync = StateSync(client)
    before = STATE_UNAVAILABLE._value.get()
    sync.refresh(0.0)
    sync.refresh(2.0)
    assert sync.reachable is False
    assert STATE_UNAVAILABLE._value.get() == before + 2
    assert sync.pool.source == "generated" and len(sync.pool.accounts) == 1000
    records = make(sync.pool, count=20, kinds=["log"], log_types=["authentication_log"]).records
    assert all(r["attributes"]["account.id"].startswith("acc-") for r in records)

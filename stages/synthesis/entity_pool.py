"""Users and accounts drawn from the State Manager, cached and refreshed in the background.

Synthesis works without the State Manager: when it cannot be reached the pool keeps the ids it
last had (or generated ones at start), every failed call is counted, and /health says so.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field

import httpx

from stages.synthesis.telemetry import STATE_UNAVAILABLE

log = logging.getLogger(__name__)

POOL_SIZE = 1000
STATE_REFRESH_SECONDS = 2.0
# The entity list changes rarely (scenarios change states, not ids): re-list much less often.
LIST_REFRESH_SECONDS = 30.0
BULK_CHUNK = 500


def generated_ids(prefix: str, count: int = POOL_SIZE) -> list[str]:
    return [f"{prefix}-{i:06d}" for i in range(1, count + 1)]


@dataclass
class EntityPool:
    """A snapshot of account and user ids with their states; replaced whole, never mutated."""

    accounts: list[str] = field(default_factory=lambda: generated_ids("acc"))
    users: list[str] = field(default_factory=lambda: generated_ids("usr"))
    states: dict[str, str] = field(default_factory=dict)
    # account -> owning user, so an account's records name its real owner
    owners: dict[str, str] = field(
        default_factory=lambda: dict(zip(generated_ids("acc"), generated_ids("usr"), strict=True))
    )
    source: str = "generated"

    def account(self, rng: random.Random) -> tuple[str, str]:
        account_id = self.accounts[rng.randrange(len(self.accounts))]
        return account_id, self.states.get(account_id, "active")

    def user(self, rng: random.Random) -> str:
        return self.users[rng.randrange(len(self.users))]

    def owner(self, account_id: str, rng: random.Random) -> str:
        drawn = self.user(rng)  # always drawn, so the random sequence is the same either way
        return self.owners.get(account_id, drawn)

    def pick_stable(self, ids: list[str], key: str) -> str:
        """The same id for the same key (a scenario's focus account) while the pool is the same."""
        return ids[random.Random(key).randrange(len(ids))]


class StateSync:
    """Keeps an ``EntityPool`` fresh from the State Manager from a daemon thread."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self.pool = EntityPool()
        self.reachable: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listed_at = float("-inf")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="state-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        clock = 0.0
        while not self._stop.is_set():
            self.refresh(clock)
            self._stop.wait(STATE_REFRESH_SECONDS)
            clock += STATE_REFRESH_SECONDS

    def refresh(self, clock: float) -> None:
        try:
            if (
                self.pool.source != "state-manager"
                or clock - self._listed_at >= LIST_REFRESH_SECONDS
            ):
                self.pool = self._list_entities()
                self._listed_at = clock
            else:
                self.pool = self._with_fresh_states(self.pool)
            self.reachable = True
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            if self.reachable is not False:
                log.warning("State Manager unavailable, using %s ids: %s", self.pool.source, exc)
            self.reachable = False
            STATE_UNAVAILABLE.inc()

    def _list_entities(self) -> EntityPool:
        accounts = self._list("account")
        users = self._list("user")
        if not accounts or not users:
            raise ValueError("the State Manager has no accounts or users yet")
        states = {item["id"]: item["state"] for item in accounts + users}
        return EntityPool(
            accounts=[a["id"] for a in accounts],
            users=[u["id"] for u in users],
            states=states,
            owners={a["id"]: a["owner"] for a in accounts if a["owner"]},
            source="state-manager",
        )

    def _list(self, kind: str) -> list[dict[str, str]]:
        resp = self._client.get("/api/entities", params={"type": kind, "limit": POOL_SIZE})
        resp.raise_for_status()
        return [
            {
                "id": str(i["id"]),
                "state": str(i["state"]),
                "owner": str((i.get("attributes") or {}).get("owner") or ""),
            }
            for i in resp.json()["items"]
        ]

    def _with_fresh_states(self, pool: EntityPool) -> EntityPool:
        ids = pool.accounts + pool.users
        fresh: dict[str, str] = {}
        for start in range(0, len(ids), BULK_CHUNK):
            chunk = ids[start : start + BULK_CHUNK]
            resp = self._client.post("/api/entities/bulk-state", json={"ids": chunk})
            resp.raise_for_status()
            # None: the entity was deleted since the listing; it keeps its last known state
            fresh.update({str(k): str(v) for k, v in resp.json().items() if v is not None})
        return EntityPool(pool.accounts, pool.users, pool.states | fresh, pool.owners, pool.source)

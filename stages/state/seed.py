"""The entities a fresh State Manager starts with: the estate's systems plus a customer base.

Generated from a fixed random seed, so every installation (and every test) has the same users,
accounts and sessions; inserting only the ids not stored yet makes seeding idempotent and lets a
later estate (a new service, a new queue) appear on the next start without touching the rest.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from stages.common import estate
from stages.state.machines import ID_PREFIXES
from stages.state.store import NewEntity

USERS = 500
ACCOUNTS = 800
SESSIONS = 200
_SEED = 20_260_101
_COUNTRIES = ("US", "GB", "DE", "FR", "NL", "ES", "IE", "SG", "CA", "AU")
_CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP")
_TIERS = ("standard", "standard", "standard", "premium", "business")
_CHANNELS = ("web", "ios", "android")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def numbered_id(entity_type: str, number: int) -> str:
    return f"{ID_PREFIXES[entity_type]}-{number:05d}"


def seed_entities() -> list[NewEntity]:
    rng = random.Random(_SEED)
    return [*_systems(), *_users(rng), *_accounts(rng), *_sessions(rng)]


def _systems() -> list[NewEntity]:
    entities = [NewEntity(s.name, "service", _service_attributes(s)) for s in estate.SERVICES]
    entities += [
        NewEntity(host, "host", {"service": s.name}) for s in estate.SERVICES for host in s.hosts
    ]
    entities += [
        NewEntity(db, "database", {"used_by": _users_of(db, "databases")})
        for db in estate.DATABASES
    ]
    entities += [NewEntity(q, "queue", {"used_by": _users_of(q, "queues")}) for q in estate.QUEUES]
    return entities


def _service_attributes(spec: estate.ServiceSpec) -> dict[str, object]:
    return {
        "tier": spec.tier,
        "hosts": list(spec.hosts),
        "databases": list(spec.databases),
        "queues": list(spec.queues),
        "calls": list(spec.calls),
    }


def _users_of(resource: str, field: str) -> list[str]:
    return [s.name for s in estate.SERVICES if resource in getattr(s, field)]


def _users(rng: random.Random) -> list[NewEntity]:
    return [
        NewEntity(
            numbered_id("user", n),
            "user",
            {
                "email": f"{numbered_id('user', n)}@example.test",
                "country": rng.choice(_COUNTRIES),
                "signup_date": (_EPOCH + timedelta(days=rng.randrange(700))).date().isoformat(),
                "risk": rng.choice(("low", "low", "low", "medium", "high")),
            },
        )
        for n in range(1, USERS + 1)
    ]


def _accounts(rng: random.Random) -> list[NewEntity]:
    # The first USERS accounts give every user one; the rest go to random users.
    return [
        NewEntity(
            numbered_id("account", n),
            "account",
            {
                "owner": numbered_id("user", n if n <= USERS else rng.randint(1, USERS)),
                "currency": rng.choice(_CURRENCIES),
                "balance": round(rng.lognormvariate(8, 1.2), 2),
                "tier": rng.choice(_TIERS),
            },
        )
        for n in range(1, ACCOUNTS + 1)
    ]


def _sessions(rng: random.Random) -> list[NewEntity]:
    return [
        NewEntity(
            numbered_id("session", n),
            "session",
            {
                "user": numbered_id("user", rng.randint(1, USERS)),
                "channel": rng.choice(_CHANNELS),
                "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            },
        )
        for n in range(1, SESSIONS + 1)
    ]

"""The entity types and their state machines (pure: no storage, no HTTP).

Business entities (user, account, session): active -> suspended | locked; suspended -> active |
closed; locked -> active | closed; closed is final.

System entities (service, host, database, queue): healthy <-> degraded <-> down (a down system
recovers through degraded), and any state -> maintenance -> healthy.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal, get_args

from stages.common.errors import Conflict, Unprocessable

EntityType = Literal["user", "account", "session", "service", "host", "database", "queue"]
ENTITY_TYPES: tuple[str, ...] = get_args(EntityType)


@dataclass(frozen=True)
class Machine:
    name: str
    initial: str
    transitions: dict[str, frozenset[str]]

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(self.transitions)

    def allowed(self, current: str) -> list[str]:
        return sorted(self.transitions.get(current, frozenset()))


BUSINESS = Machine(
    "business",
    "active",
    {
        "active": frozenset({"suspended", "locked"}),
        "suspended": frozenset({"active", "closed"}),
        "locked": frozenset({"active", "closed"}),
        "closed": frozenset(),
    },
)
SYSTEM = Machine(
    "system",
    "healthy",
    {
        "healthy": frozenset({"degraded", "maintenance"}),
        "degraded": frozenset({"healthy", "down", "maintenance"}),
        "down": frozenset({"degraded", "maintenance"}),
        "maintenance": frozenset({"healthy"}),
    },
)
MACHINES: dict[str, Machine] = {
    **dict.fromkeys(("user", "account", "session"), BUSINESS),
    **dict.fromkeys(("service", "host", "database", "queue"), SYSTEM),
}
ALL_STATES: tuple[str, ...] = tuple(sorted({s for m in (BUSINESS, SYSTEM) for s in m.states}))
# Prefixes of generated ids (``acc-3f9c...``), matching the seeded ones (``acc-00001``).
ID_PREFIXES: dict[str, str] = {
    "user": "usr",
    "account": "acc",
    "session": "ses",
    "service": "svc",
    "host": "hst",
    "database": "db",
    "queue": "q",
}


def new_entity_id(entity_type: str) -> str:
    """A fresh id such as ``acc-3f9c0a1b2c3d`` (hex, so it never collides with ``acc-00001``)."""
    return f"{ID_PREFIXES[entity_type]}-{secrets.token_hex(6)}"


class InvalidTransition(Conflict):
    def __init__(self, entity_id: str, current: str, to: str, allowed: list[str]) -> None:
        super().__init__(
            f"{entity_id} cannot go from {current} to {to}",
            detail={"current": current, "allowed": allowed},
        )


class UnknownState(Unprocessable):
    def __init__(self, entity_type: str, to: str, valid: tuple[str, ...]) -> None:
        super().__init__(
            f"{to!r} is not a state of entity type {entity_type}",
            detail={"valid": list(valid)},
        )


def check_transition(entity_id: str, entity_type: str, current: str, to: str) -> bool:
    """True when the entity must change state, False when it is already there (a no-op, so a
    retried call succeeds); raises when ``to`` is not reachable from ``current``."""
    machine = MACHINES[entity_type]
    if to not in machine.transitions:
        raise UnknownState(entity_type, to, machine.states)
    if to == current:
        return False
    if to not in machine.transitions[current]:
        raise InvalidTransition(entity_id, current, to, machine.allowed(current))
    return True

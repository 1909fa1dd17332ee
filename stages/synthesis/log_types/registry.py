"""The log type registry: one ``LogType`` per name in ``vocabulary.LOG_TYPES``.

A log type is three small functions. ``normal`` draws the attributes of an ordinary record;
``anomalous`` returns the attributes an anomaly overrides (always the same keys, which become the
catalogue's ``anomalous_fields``); ``render`` turns the final attributes into a level and a
message. Keeping the override separate is what makes the anomalous variant differ from the normal
one in exactly the listed fields when both are drawn with the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stages.common import estate
from stages.common.vocabulary import ARCHETYPES

Attrs = dict[str, Any]


@dataclass
class Ctx:
    """What a generator may draw from: the randomness, the emitting service and the entities."""

    rng: random.Random
    service: str
    host: str
    account_id: str
    user_id: str
    account_state: str = "active"
    anomaly_type: str = ""
    intensity: float = 0.0  # 0..100
    # the anomaly's focus: the same attacker, account and resources for a whole scenario
    focus_ip: str = "185.220.101.7"
    focus_account: str = "acc-000001"
    focus_user: str = "usr-000001"

    @property
    def k(self) -> float:
        """Intensity as 0..1, the factor anomalous values scale with."""
        return self.intensity / 100.0

    def database(self) -> str:
        dbs = estate.BY_NAME[self.service].databases
        return dbs[0] if dbs else "accounts-db"

    def queue(self) -> str:
        queues = estate.BY_NAME[self.service].queues
        return queues[0] if queues else "events"


Normal = Callable[[Ctx], Attrs]
Anomalous = Callable[[Ctx, Attrs], Attrs]
Render = Callable[[Attrs], tuple[str, str]]


@dataclass(frozen=True)
class LogType:
    name: str
    category: str
    services: tuple[str, ...]
    description: str
    normal: Normal
    anomalous: Anomalous
    render: Render
    fields: tuple[str, ...] = ()
    anomalous_fields: tuple[str, ...] = ()


REGISTRY: dict[str, LogType] = {}
ANOMALY_TYPES_BY_LOG_TYPE: dict[str, tuple[str, ...]] = {}
for _archetype in ARCHETYPES:
    for _name in _archetype.log_types:
        ANOMALY_TYPES_BY_LOG_TYPE[_name] = (
            *ANOMALY_TYPES_BY_LOG_TYPE.get(_name, ()),
            _archetype.anomaly_type,
        )

ALL_SERVICES = estate.SERVICE_NAMES


def register(
    name: str,
    category: str,
    services: tuple[str, ...],
    description: str,
    normal: Normal,
    anomalous: Anomalous,
    render: Render,
) -> None:
    """Add a log type; its field lists are read off one sample so they cannot drift."""
    unknown = [s for s in services if s not in estate.BY_NAME]
    if unknown or not services:
        raise ValueError(f"{name}: unknown services {unknown}")
    ctx = sample_ctx(services[0])
    base = normal(ctx)
    overrides = anomalous(ctx, dict(base))
    if not set(overrides) <= set(base):
        raise ValueError(f"{name}: anomalous fields {set(overrides) - set(base)} not in fields")
    for anomaly_type in ANOMALY_TYPES_BY_LOG_TYPE.get(name, ()):
        ctx.anomaly_type = anomaly_type
        if set(anomalous(ctx, dict(base))) != set(overrides):
            # one list of anomalous fields per type: every anomaly overrides the same ones
            raise ValueError(f"{name}: {anomaly_type} overrides other fields than the default")
    REGISTRY[name] = LogType(
        name,
        category,
        services,
        description,
        normal,
        anomalous,
        render,
        tuple(base),
        tuple(overrides),
    )


def sample_ctx(service: str, seed: int = 0) -> Ctx:
    return Ctx(
        rng=random.Random(seed),
        service=service,
        host=estate.BY_NAME[service].hosts[0],
        account_id="acc-000042",
        user_id="usr-000042",
        anomaly_type="",
        intensity=80,
    )


# --- small drawing helpers every category module uses ---------------------------------------


def customer_ip(rng: random.Random) -> str:
    """Client addresses of ordinary customers (documentation and carrier ranges)."""
    first = rng.choice((73, 98, 174, 203))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def internal_ip(rng: random.Random) -> str:
    return f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def hex_id(rng: random.Random, chars: int = 16) -> str:
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def ms(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 1)


def between(ctx: Ctx, low: float, high: float) -> float:
    """An anomalous magnitude that grows with intensity from ``low`` towards ``high``."""
    top = low + (high - low) * ctx.k
    return round(ctx.rng.uniform(low, max(low, top)), 1)


def level_for(ok: bool, warn: bool = False) -> str:
    if not ok:
        return "ERROR"
    return "WARN" if warn else "INFO"

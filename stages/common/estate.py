"""The simulated estate: the banking-style services, their hosts and the systems they use.

One list that synthesis (which service emits what), the State Manager (the system entities it
seeds) and the orchestrator (scenario targets) share, so a service name means the same thing
everywhere. Names are lower-case and dashed: they become Hive partition values in the lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    tier: str  # edge | core | data | support
    hosts: tuple[str, ...]
    databases: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()  # downstream services (APM child spans)


def _hosts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}-{i}" for i in range(1, count + 1))


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "api-gateway",
        "edge",
        _hosts("api-gw", 3),
        calls=("auth-service", "account-service", "payment-service", "user-service"),
    ),
    ServiceSpec("auth-service", "core", _hosts("auth", 2), databases=("users-db",), calls=()),
    ServiceSpec(
        "user-service", "core", _hosts("user", 2), databases=("users-db",), queues=("events",)
    ),
    ServiceSpec(
        "account-service",
        "core",
        _hosts("account", 2),
        databases=("accounts-db",),
        calls=("ledger-service",),
    ),
    ServiceSpec(
        "payment-service",
        "core",
        _hosts("payment", 3),
        databases=("payments-db",),
        queues=("payments",),
        calls=("fraud-detection", "ledger-service", "notification-service"),
    ),
    ServiceSpec(
        "ledger-service", "core", _hosts("ledger", 2), databases=("ledger-db",), queues=("ledger",)
    ),
    ServiceSpec(
        "fraud-detection",
        "core",
        _hosts("fraud", 2),
        databases=("fraud-db",),
        queues=("fraud-alerts",),
    ),
    ServiceSpec("notification-service", "support", _hosts("notify", 2), queues=("notifications",)),
    ServiceSpec("reporting-service", "support", _hosts("report", 1), databases=("warehouse-db",)),
    ServiceSpec("compliance-service", "support", _hosts("compliance", 1), databases=("audit-db",)),
)

SERVICE_NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)
BY_NAME: dict[str, ServiceSpec] = {s.name: s for s in SERVICES}
HOSTS: tuple[str, ...] = tuple(h for s in SERVICES for h in s.hosts)
DATABASES: tuple[str, ...] = tuple(sorted({d for s in SERVICES for d in s.databases}))
QUEUES: tuple[str, ...] = tuple(sorted({q for s in SERVICES for q in s.queues}))

# The estate's week-end change of every metric, as a fraction of its baseline (quieter): live
# metric records have it, and a history's grid by default, so that live traffic carries on at
# the level of a history that ends on a week-end.
WEEKLY_AMPLITUDE = -0.1

# The metrics each service reports (its system metrics, its database's and queue's, and its
# business ones): what synthesis emits for it and what a history run plans series for.
_SYSTEM = (
    "cpu.utilization",
    "memory.utilization",
    "disk.utilization",
    "disk.io_wait",
    "latency.p95",
    "error.rate",
    "request.rate",
    "thread_pool.active",
    "gc.pause",
    "container.restarts",
    "network.latency",
    "network.packet_loss",
    "dns.lookup",
)
_DB = (
    "db.connections.active",
    "db.query.duration",
    "db.deadlocks",
    "db.replica.lag",
    "cache.hit_ratio",
)
_BY_SERVICE_EXTRA: dict[str, tuple[str, ...]] = {
    "api-gateway": (
        "tls.handshake_failures",
        "rate_limit.rejections",
        "lb.request_share",
        "circuit_breaker.open",
    ),
    "auth-service": ("auth.failures",),
    "payment-service": ("payment.amount", "transaction.rate", "circuit_breaker.open"),
    "ledger-service": ("transaction.rate",),
    "fraud-detection": ("fraud.score",),
    "account-service": ("circuit_breaker.open",),
}


def metrics_for(service: str) -> tuple[str, ...]:
    """The metrics a service reports: system ones, its database's and queue's, its business ones."""
    spec = BY_NAME[service]
    names = list(_SYSTEM)
    if spec.databases:
        names += _DB
    if spec.queues:
        names.append("queue.depth")
    names += _BY_SERVICE_EXTRA.get(service, ())
    return tuple(names)


METRICS_BY_SERVICE: dict[str, tuple[str, ...]] = {s: metrics_for(s) for s in SERVICE_NAMES}


def series_metrics(service: str, only: Sequence[str] | None) -> tuple[str, ...]:
    """The metrics a series grid emits for ``service``: those it reports, within ``only``."""
    reported = METRICS_BY_SERVICE[service]
    return reported if only is None else tuple(m for m in reported if m in set(only))

"""An anomaly window's scope: which records it covers, by time, kind, service, name and host.

A record belongs to a window when its millisecond timestamp is in [start, end) and
- a log: its ``log_type`` is one of the scope's log types and its service one of that type's
  services;
- a metric: its ``metric_name`` is one of the scope's metrics and its service one of that
  metric's services;
- an APM span: its service is one of the scope's APM services, and its trace (not the span
  itself) started inside the window;
and, when the scope names hosts, a record from a service that runs one of them must come from
one of them (a disk filling up on one host leaves its siblings alone).

Synthesis labels every record that falls in a window's scope with that window, whichever part
of a request it was made for, so ground truth holds in both directions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stages.common import estate
from stages.common.vocabulary import Archetype
from stages.synthesis.errors import UnknownNames
from stages.synthesis.log_types import REGISTRY
from stages.synthesis.schemas import ScopeRequest

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_ms_ceil(moment: datetime) -> int:
    """The first whole millisecond at or after ``moment`` (records carry milliseconds)."""
    return -(-((moment - EPOCH) // _MICROSECOND) // 1000)


@dataclass(frozen=True, eq=False)
class Scope:
    logs: Mapping[str, frozenset[str]]  # log type -> services
    metrics: Mapping[str, frozenset[str]]  # metric -> services
    apm: frozenset[str]
    hosts: frozenset[str]
    pins: Mapping[str, str]  # service -> the scope host it runs (services running one)

    def host_ok(self, service: str, host: str) -> bool:
        return service not in self.pins or host in self.hosts

    def has_log(self, log_type: str, service: str, host: str) -> bool:
        return service in self.logs.get(log_type, ()) and self.host_ok(service, host)

    def has_metric(self, metric: str, service: str, host: str) -> bool:
        return service in self.metrics.get(metric, ()) and self.host_ok(service, host)

    def has_span(self, service: str, host: str) -> bool:
        return service in self.apm and self.host_ok(service, host)

    def log_pairs(self, only: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(log type, service) pairs synthesis can emit, within ``only`` when they overlap."""
        pairs = [
            (name, service)
            for name in sorted(self.logs)
            for service in sorted(self.logs[name])
            if service in REGISTRY[name].services
        ]
        wanted = set(only or ())
        return [p for p in pairs if p[0] in wanted] or pairs

    def metric_pairs(self) -> list[tuple[str, str]]:
        return [(m, s) for m in sorted(self.metrics) for s in sorted(self.metrics[m])]


def make_scope(
    logs: Mapping[str, Iterable[str]],
    metrics: Mapping[str, Iterable[str]],
    apm: Iterable[str],
    hosts: Iterable[str],
) -> Scope:
    host_set = frozenset(hosts)
    pins = {
        spec.name: host
        for spec in estate.SERVICES
        for host in sorted(host_set)
        if host in spec.hosts
    }
    return Scope(
        logs={name: frozenset(group) for name, group in logs.items()},
        metrics={name: frozenset(group) for name, group in metrics.items()},
        apm=frozenset(apm),
        hosts=host_set,
        pins=pins,
    )


def default_scope(archetype: Archetype, service: str, host: str | None) -> Scope:
    """The scope when the caller gives none: the archetype's log types from the target service
    (or the type's first emitter when the target does not emit it), its metrics and spans from
    the target service, pinned to the target host for host anomalies."""
    logs = {
        name: [service if service in REGISTRY[name].services else REGISTRY[name].services[0]]
        for name in archetype.log_types
    }
    return make_scope(
        logs,
        {effect.metric: [service] for effect in archetype.metrics},
        [service],
        [host] if host is not None and archetype.target == "host" else [],
    )


def explicit_scope(archetype: Archetype, requested: ScopeRequest) -> Scope:
    """The caller's scope, checked: names must exist and belong to the archetype, whose
    effects are the only ones synthesis knows how to apply."""
    check_names("scope log types", requested.logs, archetype.log_types)
    check_names("scope metrics", requested.metrics, [m.metric for m in archetype.metrics])
    services = [
        s for group in (*requested.logs.values(), *requested.metrics.values()) for s in group
    ]
    check_names("scope services", [*services, *requested.apm], estate.SERVICE_NAMES)
    check_names("scope hosts", requested.hosts, estate.HOSTS)
    return make_scope(requested.logs, requested.metrics, requested.apm, requested.hosts)


def check_names(what: str, given: Iterable[str] | None, valid: Iterable[str]) -> None:
    valid_set = set(valid)
    unknown = [name for name in given or () if name not in valid_set]
    if unknown:
        raise UnknownNames(what, unknown, valid_set)

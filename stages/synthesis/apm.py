"""APM spans: traces that follow ``estate.ServiceSpec.calls`` from a root service downwards.

A span's duration is its own work plus its children's, so a parent always outlasts its
children; an anomaly slows (and may fail) the target service's spans and therefore every
ancestor's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from stages.common import estate
from stages.common.vocabulary import Archetype

_ROUTES = {
    "api-gateway": ("GET /api/v1/accounts", "POST /api/v1/payments", "GET /api/v1/users/me"),
    "auth-service": ("POST /internal/token/verify",),
    "user-service": ("GET /internal/users/{id}",),
    "account-service": ("GET /internal/accounts/{id}",),
    "payment-service": ("POST /internal/payments",),
    "ledger-service": ("POST /internal/ledger/entries",),
    "fraud-detection": ("POST /internal/fraud/score",),
    "notification-service": ("POST /internal/notifications",),
    "reporting-service": ("GET /internal/reports/daily",),
    "compliance-service": ("POST /internal/screening",),
}
MAX_DEPTH = 3


@dataclass(frozen=True)
class SpanEffect:
    """How an anomaly changes the target service's spans (1.0 and 0.0 mean unchanged)."""

    service: str
    slowdown: float
    error_probability: float


# (service, host, offset of the span in its trace in ms) -> the effect on that span and the
# label it carries, or None for a normal span
SpanRule = Callable[[str, str, float], tuple[SpanEffect, object] | None]


def span_effect(archetype: Archetype, service: str, intensity: float) -> SpanEffect:
    k = intensity / 100.0
    slowdown, error_probability = 1.0 + 1.5 * k, 0.0
    for effect in archetype.metrics:
        if effect.metric in ("latency.p95", "network.latency", "db.query.duration"):
            slowdown = max(slowdown, 1.0 + (effect.factor - 1.0) * k)
        if effect.metric == "error.rate" and effect.peak is not None:
            error_probability = min(0.95, effect.peak / 100.0 * (0.5 + k))
    return SpanEffect(service, slowdown, error_probability)


def _hex(rng: random.Random, chars: int) -> str:
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def trace(
    rng: random.Random,
    root: str,
    allowed: frozenset[str],
    rule: SpanRule | None = None,
    only_child: str | None = None,
    pins: Mapping[str, str] | None = None,
) -> list[dict[str, object]]:
    """The spans of one trace, parents first, as partial records (no timestamp; ``label`` is
    what ``rule`` said about the span).

    ``allowed`` prunes services the caller did not ask for (with their subtrees);
    ``only_child`` keeps just that branch under the root (an anomaly's path to its target);
    ``rule`` slows and fails the spans an anomaly covers; ``pins`` puts services on given
    hosts (an anomaly's own trace through its target host).
    """
    builder = _TraceBuilder(rng, _hex(rng, 32), allowed, rule, pins or {})
    builder.span(root, None, 0, 0.0, only_child)
    return builder.spans


@dataclass
class _TraceBuilder:
    rng: random.Random
    trace_id: str
    allowed: frozenset[str]
    rule: SpanRule | None
    pins: Mapping[str, str]
    spans: list[dict[str, object]] = field(default_factory=list)

    def span(
        self, service: str, parent: str | None, depth: int, offset_ms: float, only_child: str | None
    ) -> tuple[float, bool]:
        """Appends this span and its subtree; returns (duration, failed)."""
        rng = self.rng
        host = self.pins.get(service) or rng.choice(estate.BY_NAME[service].hosts)
        hit = self.rule(service, host, offset_ms) if self.rule is not None else None
        record: dict[str, object] = {
            "kind": "apm",
            "service": service,
            "host": host,
            "trace_id": self.trace_id,
            "span_id": _hex(rng, 16),
            "parent_span_id": parent,
            "name": rng.choice(_ROUTES[service]),
        }
        self.spans.append(record)
        own, failed = self._own_work(hit[0] if hit is not None else None)
        elapsed = own / 2
        for child in self._children(service, depth, only_child):
            child_ms, child_failed = self.span(
                child, str(record["span_id"]), depth + 1, offset_ms + elapsed, None
            )
            elapsed += child_ms
            # a failed dependency usually fails its caller too
            failed = failed or (child_failed and rng.random() < 0.8)
        duration = round(elapsed + own / 2, 2)
        record.update(duration_ms=duration, offset_ms=offset_ms, status="ERROR" if failed else "OK")
        record["label"] = hit[1] if hit is not None else None
        # Each span is one service serving a call, i.e. a server span, so neither a span kind
        # (the same on every span) nor OpenTelemetry's peer.service (which belongs on client
        # spans) is stored; the caller is the span parent_span_id names.
        record["attributes"] = {
            "http.status_code": 500 if failed else 200,
            "self_time_ms": round(own, 2),
            "depth": depth,
        }
        return duration, failed

    def _own_work(self, effect: SpanEffect | None) -> tuple[float, bool]:
        own = self.rng.uniform(1.0, 18.0)
        if effect is None:
            return own, False
        return own * effect.slowdown, self.rng.random() < effect.error_probability

    def _children(self, service: str, depth: int, only_child: str | None) -> list[str]:
        if depth >= MAX_DEPTH:
            return []
        calls = estate.BY_NAME[service].calls
        if only_child is not None:
            return [c for c in calls if c == only_child]
        # not every request fans out to every dependency
        return [c for c in calls if c in self.allowed and self.rng.random() >= 0.3]

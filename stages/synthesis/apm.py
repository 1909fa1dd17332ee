"""APM spans: traces that follow ``estate.ServiceSpec.calls`` from a root service downwards.

A span's duration is its own work plus its children's, so a parent always outlasts its
children; an anomaly slows (and may fail) the target service's spans and therefore every
ancestor's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stages.common import estate
from stages.common.catalogue import Archetype

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
    effect: SpanEffect | None = None,
    only_child: str | None = None,
) -> list[dict[str, object]]:
    """The spans of one trace, parents first, as partial records (no timestamp, no labels).

    ``allowed`` prunes services the caller did not ask for (with their subtrees);
    ``only_child`` keeps just that branch under the root (an anomaly's path to its target).
    """
    trace_id = _hex(rng, 32)
    spans: list[dict[str, object]] = []
    _span(rng, trace_id, root, None, 0, allowed, effect, only_child, spans, 0.0)
    return spans


def _span(
    rng: random.Random,
    trace_id: str,
    service: str,
    parent: str | None,
    depth: int,
    allowed: frozenset[str],
    effect: SpanEffect | None,
    only_child: str | None,
    out: list[dict[str, object]],
    offset_ms: float,
) -> tuple[float, bool]:
    """Appends this span and its subtree to ``out``; returns (duration, failed)."""
    span_id = _hex(rng, 16)
    record: dict[str, object] = {
        "kind": "apm",
        "service": service,
        "host": rng.choice(estate.BY_NAME[service].hosts),
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": rng.choice(_ROUTES[service]),
    }
    out.append(record)
    own = rng.uniform(1.0, 18.0)
    failed = False
    if effect is not None and service == effect.service:
        own *= effect.slowdown
        failed = rng.random() < effect.error_probability
    children = estate.BY_NAME[service].calls if depth < MAX_DEPTH else ()
    if only_child is not None and depth == 0:
        children = tuple(c for c in children if c == only_child)
    elapsed = own / 2
    for child in children:
        # not every request fans out to every dependency
        if child not in allowed or (only_child is None and rng.random() < 0.3):
            continue
        child_ms, child_failed = _span(
            rng,
            trace_id,
            child,
            span_id,
            depth + 1,
            allowed,
            effect,
            None,
            out,
            offset_ms + elapsed,
        )
        elapsed += child_ms
        # a failed dependency usually fails its caller too
        failed = failed or (child_failed and rng.random() < 0.8)
    duration = round(elapsed + own / 2, 2)
    record["duration_ms"] = duration
    record["offset_ms"] = offset_ms
    record["status"] = "ERROR" if failed else "OK"
    record["attributes"] = {
        "span.kind": "server" if parent is None else "internal",
        "http.status_code": 500 if failed else 200,
        "peer.service": service,
        "self_time_ms": round(own, 2),
        "depth": depth,
    }
    return duration, failed

"""Specialised runtime and edge logs: GC, DNS, load balancer, service mesh, CDN."""

from __future__ import annotations

from stages.common import estate
from stages.synthesis.log_types.registry import (
    ALL_SERVICES,
    Attrs,
    Ctx,
    between,
    customer_ip,
    ms,
    register,
)

CAT = "specialized"
EDGE = ("api-gateway",)


def _gc(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "gc.collector": "G1",
        "gc.kind": r.choice(("young", "young", "mixed")),
        "pause_ms": ms(r, 2, 25),
        "heap.used_mb": r.randrange(600, 1400),
        "heap.max_mb": 4096,
        "reclaimed_mb": r.randrange(50, 400),
    }


def _gc_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "gc.kind": "full",
        "pause_ms": between(c, 200, 8000),
        "heap.used_mb": 3500 + int(590 * c.k),
        "reclaimed_mb": c.rng.randrange(0, 20),
    }


def _gc_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["pause_ms"] > 100 else "DEBUG"
    return (
        level,
        f"GC {a['gc.kind']} pause {a['pause_ms']}ms, heap {a['heap.used_mb']}/{a['heap.max_mb']}MB",
    )


def _dns(c: Ctx) -> Attrs:
    r = c.rng
    target = r.choice([*estate.SERVICE_NAMES, "api.stripe.com"])
    return {
        "dns.query": f"{target}.svc.cluster.local",
        "dns.type": "A",
        "duration_ms": ms(r, 0.3, 6),
        "rcode": "NOERROR",
        "resolver": "10.0.0.10",
        "cache_hit": r.random() < 0.7,
    }


def _dns_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "duration_ms": between(c, 400, 5000),
        "rcode": c.rng.choice(("SERVFAIL", "NOERROR")),
        "cache_hit": False,
    }


def _dns_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["duration_ms"] > 100 or a["rcode"] != "NOERROR" else "DEBUG"
    return level, f"DNS {a['dns.type']} {a['dns.query']} {a['rcode']} in {a['duration_ms']}ms"


def _lb(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "backend": r.choice(estate.BY_NAME["api-gateway"].hosts),
        "backend.share_pct": round(r.uniform(28, 38), 1),
        "active_connections": r.randrange(40, 160),
        "http.status_code": 200,
        "requests_per_s": r.randrange(200, 400),
    }


def _lb_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "traffic_surge":
        return {
            "backend.share_pct": a["backend.share_pct"],
            "active_connections": 500 + int(c.rng.uniform(0, 3000) * c.k),
            "requests_per_s": 900 + int(c.rng.uniform(0, 3000) * c.k),
        }
    return {
        "backend.share_pct": between(c, 60, 95),
        "active_connections": 500 + int(c.rng.uniform(0, 3000) * c.k),
        "requests_per_s": 900 + int(c.rng.uniform(0, 1500) * c.k),
    }


def _lb_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["backend.share_pct"] > 50 or a["requests_per_s"] > 800 else "DEBUG"
    return (
        level,
        f"lb -> {a['backend']}: {a['backend.share_pct']}% share, {a['requests_per_s']} req/s",
    )


def _mesh(c: Ctx) -> Attrs:
    r = c.rng
    calls = estate.BY_NAME[c.service].calls or ("ledger-service",)
    return {
        "source.workload": c.service,
        "destination.workload": r.choice(calls),
        "response_code": 200,
        "duration_ms": ms(r, 0.5, 12),
        "mtls": True,
        "response_flags": "-",
    }


def _mesh_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "network_latency":
        return {"duration_ms": between(c, 80, 2000), "response_code": 200, "response_flags": "DC"}
    return {"response_code": 503, "duration_ms": between(c, 20, 200), "response_flags": "UF,URX"}


def _mesh_text(a: Attrs) -> tuple[str, str]:
    level = "ERROR" if a["response_code"] >= 500 else "WARN" if a["duration_ms"] > 50 else "DEBUG"
    return level, (
        f"{a['source.workload']} -> {a['destination.workload']} {a['response_code']} "
        f"{a['duration_ms']}ms flags={a['response_flags']}"
    )


def _cdn(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "edge.pop": r.choice(("FRA", "AMS", "LHR")),
        "cache.status": r.choice(("HIT", "HIT", "HIT", "MISS")),
        "http.status_code": 200,
        "bytes": r.randrange(2_000, 400_000),
        "client.ip": customer_ip(r),
        "requests_per_s": r.randrange(500, 1500),
    }


def _cdn_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {"cache.status": "MISS", "requests_per_s": 3000 + int(c.rng.uniform(0, 20_000) * c.k)}


def _cdn_text(a: Attrs) -> tuple[str, str]:
    return "INFO", f"CDN {a['edge.pop']} {a['cache.status']} {a['http.status_code']} {a['bytes']}B"


register(
    "gc_activity_log", CAT, ALL_SERVICES, "Garbage collection pauses", _gc, _gc_anomaly, _gc_text
)
register("dns_resolution_log", CAT, ALL_SERVICES, "DNS lookups", _dns, _dns_anomaly, _dns_text)
register("load_balancer_log", CAT, EDGE, "Load balancer distribution", _lb, _lb_anomaly, _lb_text)
register(
    "service_mesh_log",
    CAT,
    tuple(s.name for s in estate.SERVICES if s.calls),
    "Sidecar access logs",
    _mesh,
    _mesh_anomaly,
    _mesh_text,
)
register("cdn_log", CAT, EDGE, "CDN edge requests", _cdn, _cdn_anomaly, _cdn_text)

"""Monitoring logs: health checks, alerts, SLA breaches, circuit breakers, rate limiters."""

from __future__ import annotations

from stages.common import estate
from stages.synthesis.log_types.registry import ALL_SERVICES, Attrs, Ctx, between, ms, register

CAT = "monitoring"
CALLERS = tuple(s.name for s in estate.SERVICES if s.calls)


def _health(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "check": r.choice(("liveness", "readiness")),
        "status": "pass",
        "duration_ms": ms(r, 1, 15),
        "consecutive_failures": 0,
        "endpoint": "/health",
    }


def _health_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "health_check_flapping":
        return {
            "status": c.rng.choice(("fail", "timeout")),
            "duration_ms": between(c, 900, 5000),
            "consecutive_failures": 1,
        }
    return {
        "status": "fail",
        "duration_ms": between(c, 2000, 10_000),
        "consecutive_failures": 3 + int(20 * c.k),
    }


def _health_text(a: Attrs) -> tuple[str, str]:
    level = "INFO" if a["status"] == "pass" else "ERROR"
    return level, f"{a['check']} check {a['endpoint']} {a['status']} in {a['duration_ms']}ms"


def _alert(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "alert.name": r.choice(("HeartbeatOK", "BackupCompleted", "CertRenewed")),
        "severity": "info",
        "state": "resolved",
        "firing_for_s": 0,
        "runbook": "https://runbooks.local/general",
    }


def _alert_anomaly(c: Ctx, a: Attrs) -> Attrs:
    name = "MetricsMissing" if c.anomaly_type == "metrics_dropout" else "HealthCheckFlapping"
    return {
        "alert.name": name,
        "severity": "critical" if c.k > 0.6 else "warning",
        "state": "firing",
        "firing_for_s": 60 + int(1800 * c.k),
    }


def _alert_text(a: Attrs) -> tuple[str, str]:
    level = "ERROR" if a["state"] == "firing" else "INFO"
    return level, f"alert {a['alert.name']} {a['state']} ({a['severity']}) for {a['firing_for_s']}s"


def _sla(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "slo": "p95 latency < 300ms",
        "p95_ms": ms(r, 80, 250),
        "error_budget_left": round(r.uniform(0.5, 1), 3),
        "breached": False,
        "window": "1h",
    }


def _sla_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "p95_ms": between(c, 400, 5000),
        "error_budget_left": round(0.3 * (1 - c.k), 3),
        "breached": True,
    }


def _sla_text(a: Attrs) -> tuple[str, str]:
    level = "ERROR" if a["breached"] else "DEBUG"
    return (
        level,
        f"SLO '{a['slo']}' over {a['window']}: p95 "
        f"{a['p95_ms']}ms, budget {a['error_budget_left']}",
    )


def _breaker(c: Ctx) -> Attrs:
    r = c.rng
    calls = estate.BY_NAME[c.service].calls or ("ledger-service",)
    return {
        "breaker": f"{c.service}->{r.choice(calls)}",
        "state": "closed",
        "failure_rate": round(r.uniform(0, 2), 2),
        "calls_rejected": 0,
    }


def _breaker_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "state": "open",
        "failure_rate": between(c, 50, 100),
        "calls_rejected": 10 + int(c.rng.uniform(0, 5000) * c.k),
    }


def _breaker_text(a: Attrs) -> tuple[str, str]:
    level = "ERROR" if a["state"] == "open" else "DEBUG"
    return level, f"circuit {a['breaker']} {a['state']} (failure rate {a['failure_rate']}%)"


def _limiter(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "client.id": f"client-{r.randrange(1, 400)}",
        "limit_per_min": 600,
        "used": r.randrange(5, 300),
        "rejected": 0,
        "decision": "allow",
    }


def _limiter_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {"used": 600, "rejected": 1 + int(c.rng.uniform(0, 20_000) * c.k), "decision": "reject"}


def _limiter_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["decision"] == "reject" else "DEBUG"
    return (
        level,
        f"rate limit {a['client.id']}: {a['used']}/{a['limit_per_min']} per min, {a['decision']}",
    )


register(
    "health_check_log",
    CAT,
    ALL_SERVICES,
    "Liveness and readiness probes",
    _health,
    _health_anomaly,
    _health_text,
)
register("alert_log", CAT, ALL_SERVICES, "Alert state changes", _alert, _alert_anomaly, _alert_text)
register("sla_breach_log", CAT, CALLERS, "SLO evaluations", _sla, _sla_anomaly, _sla_text)
register(
    "circuit_breaker_log",
    CAT,
    CALLERS,
    "Circuit breaker state",
    _breaker,
    _breaker_anomaly,
    _breaker_text,
)
register(
    "rate_limiter_log",
    CAT,
    ("api-gateway",),
    "Rate limiter decisions",
    _limiter,
    _limiter_anomaly,
    _limiter_text,
)

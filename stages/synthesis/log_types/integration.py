"""Integration logs: queues, webhooks, third-party APIs, batch jobs, the event bus."""

from __future__ import annotations

from stages.common import estate
from stages.synthesis.log_types.registry import ALL_SERVICES, Attrs, Ctx, between, ms, register

CAT = "integration"
QUEUE_SERVICES = tuple(s.name for s in estate.SERVICES if s.queues)
PARTNERS = ("stripe", "plaid", "experian", "twilio", "swift-gpi")


def _mq(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "queue.name": c.queue(),
        "operation": r.choice(("publish", "consume")),
        "queue.depth": r.randrange(0, 120),
        "consumer.lag_ms": ms(r, 1, 200),
        "consumers": r.randrange(2, 6),
        "redelivered": False,
    }


def _mq_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "queue.depth": 5_000 + int(c.rng.uniform(0, 2e6) * c.k),
        "consumer.lag_ms": between(c, 30_000, 3.6e6),
        "redelivered": True,
    }


def _mq_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["queue.depth"] > 1000 else "DEBUG"
    return (
        level,
        f"{a['operation']} on {a['queue.name']}: depth "
        f"{a['queue.depth']}, lag {a['consumer.lag_ms']}ms",
    )


def _webhook(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "webhook.id": f"wh_{r.getrandbits(32):08x}",
        "endpoint": f"https://hooks.{r.choice(PARTNERS)}.example/events",
        "http.status_code": 200,
        "attempt": 1,
        "duration_ms": ms(r, 40, 400),
        "delivered": True,
    }


def _webhook_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "http.status_code": c.rng.choice((500, 502, 503, 0)),
        "attempt": 2 + int(6 * c.k),
        "duration_ms": between(c, 5000, 30_000),
        "delivered": False,
    }


def _webhook_text(a: Attrs) -> tuple[str, str]:
    if a["delivered"]:
        return (
            "INFO",
            f"webhook {a['webhook.id']} delivered to {a['endpoint']} in {a['duration_ms']}ms",
        )
    return (
        "ERROR",
        f"webhook {a['webhook.id']} to {a['endpoint']} failed "
        f"({a['http.status_code']}), attempt {a['attempt']}",
    )


def _third_party(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "peer.service": r.choice(PARTNERS),
        "http.method": "POST",
        "http.status_code": 200,
        "duration_ms": ms(r, 50, 450),
        "dns_ms": ms(r, 0.5, 5),
        "error": "",
    }


def _third_party_anomaly(c: Ctx, a: Attrs) -> Attrs:
    t = c.anomaly_type
    if t == "dns_resolution_slow":
        return {
            "dns_ms": between(c, 500, 8000),
            "duration_ms": between(c, 1000, 9000),
            "error": "",
            "http.status_code": 200,
        }
    error = "connect_timeout" if t == "connection_timeout" else "upstream_unavailable"
    return {
        "dns_ms": a["dns_ms"] + 0.1,
        "duration_ms": between(c, 10_000, 30_000),
        "error": error,
        "http.status_code": 504 if t == "connection_timeout" else 503,
    }


def _third_party_text(a: Attrs) -> tuple[str, str]:
    if a["error"]:
        return "ERROR", f"{a['peer.service']} call failed: {a['error']} after {a['duration_ms']}ms"
    level = "WARN" if a["duration_ms"] > 1000 else "INFO"
    return (
        level,
        f"{a['peer.service']} {a['http.method']} {a['http.status_code']} "
        f"in {a['duration_ms']}ms (dns {a['dns_ms']}ms)",
    )


def _batch(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "job.name": r.choice(("nightly-interest", "statement-render", "kyc-refresh")),
        "status": "succeeded",
        "duration_s": r.randrange(60, 1800),
        "items": r.randrange(1_000, 400_000),
        "overrun": False,
    }


def _batch_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "status": "running",
        "duration_s": 7_200 + int(c.rng.uniform(0, 30_000) * c.k),
        "overrun": True,
    }


def _batch_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["overrun"] else "INFO"
    return (
        level,
        f"batch job {a['job.name']} {a['status']} after {a['duration_s']}s ({a['items']} items)",
    )


def _event_bus(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "topic": r.choice(("account.updated", "payment.created", "user.registered")),
        "partition": r.randrange(12),
        "offset.lag": r.randrange(0, 50),
        "publish_ms": ms(r, 0.5, 8),
        "dead_lettered": False,
    }


def _event_bus_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "offset.lag": 10_000 + int(c.rng.uniform(0, 5e6) * c.k),
        "publish_ms": between(c, 200, 5000),
        "dead_lettered": c.k > 0.7,
    }


def _event_bus_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["offset.lag"] > 1000 else "DEBUG"
    return (
        level,
        f"event {a['topic']}[{a['partition']}] published "
        f"in {a['publish_ms']}ms, lag {a['offset.lag']}",
    )


register(
    "message_queue_log",
    CAT,
    QUEUE_SERVICES,
    "Queue publishes and consumes",
    _mq,
    _mq_anomaly,
    _mq_text,
)
register(
    "webhook_delivery_log",
    CAT,
    ("notification-service",),
    "Outgoing webhooks",
    _webhook,
    _webhook_anomaly,
    _webhook_text,
)
register(
    "third_party_api_log",
    CAT,
    ("payment-service", "notification-service", "user-service", "fraud-detection"),
    "Calls to external partners",
    _third_party,
    _third_party_anomaly,
    _third_party_text,
)
register(
    "batch_job_log",
    CAT,
    ("reporting-service", "compliance-service", "ledger-service"),
    "Scheduled batch jobs",
    _batch,
    _batch_anomaly,
    _batch_text,
)
register(
    "event_bus_log",
    CAT,
    ALL_SERVICES,
    "Domain events on the bus",
    _event_bus,
    _event_bus_anomaly,
    _event_bus_text,
)

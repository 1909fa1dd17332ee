"""Application logs: the gateway, service requests, errors, caches, thread pools."""

from __future__ import annotations

from stages.synthesis.log_types.registry import (
    ALL_SERVICES,
    Attrs,
    Ctx,
    between,
    customer_ip,
    ms,
    register,
)

CAT = "application"
ROUTES = (
    "/api/v1/accounts",
    "/api/v1/payments",
    "/api/v1/transfers",
    "/api/v1/users/me",
    "/api/v1/auth/token",
    "/api/v1/cards",
    "/api/v1/statements",
)
_ERRORS_5XX = (500, 502, 503, 504)


def _gateway(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "http.method": r.choice(("GET", "GET", "GET", "POST", "PUT")),
        "http.route": r.choice(ROUTES),
        "http.status_code": r.choice((200, 200, 200, 200, 201, 204, 304)),
        "duration_ms": ms(r, 8, 160),
        "client.ip": customer_ip(r),
        "user_agent": r.choice(("BankApp/5.2 iOS", "BankApp/5.2 Android", "Mozilla/5.0")),
        "bytes_sent": r.randrange(200, 40_000),
    }


def _gateway_anomaly(c: Ctx, a: Attrs) -> Attrs:
    t = c.anomaly_type
    if t == "rate_limit_exceeded":
        return {"http.status_code": 429, "duration_ms": between(c, 1, 3)}
    if t in ("cpu_spike", "network_latency", "api_degradation", "traffic_surge"):
        status = 504 if c.rng.random() < 0.2 * c.k else a["http.status_code"]
        return {"http.status_code": status, "duration_ms": between(c, 600, 9000)}
    if t == "ssl_handshake_failure":
        return {"http.status_code": 525, "duration_ms": between(c, 200, 1200)}
    return {"http.status_code": c.rng.choice(_ERRORS_5XX), "duration_ms": between(c, 250, 5000)}


def _gateway_text(a: Attrs) -> tuple[str, str]:
    code = a["http.status_code"]
    level = "ERROR" if code >= 500 else "WARN" if code >= 400 or a["duration_ms"] > 1000 else "INFO"
    return level, f"{a['http.method']} {a['http.route']} {code} {a['duration_ms']}ms"


def _request(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "operation": r.choice(("getAccount", "createPayment", "listTransactions", "updateProfile")),
        "duration_ms": ms(r, 3, 120),
        "status": "ok",
        "http.status_code": 200,
        "upstream": r.choice(("api-gateway", "internal")),
        "retries": 0,
    }


def _request_anomaly(c: Ctx, a: Attrs) -> Attrs:
    t = c.anomaly_type
    if t in ("api_errors", "circuit_breaker_open", "connection_timeout"):
        code = 503 if t == "circuit_breaker_open" else c.rng.choice(_ERRORS_5XX)
        return {
            "duration_ms": between(c, 200, 6000),
            "status": "error",
            "http.status_code": code,
            "retries": 1 + int(3 * c.k),
        }
    slow = t != "latency_jitter" or c.rng.random() < 0.5
    duration = between(c, 400, 8000) if slow else round(c.rng.uniform(0.1, 2), 1)
    return {"duration_ms": duration, "status": "slow", "http.status_code": 200, "retries": 0}


def _request_text(a: Attrs) -> tuple[str, str]:
    if a["status"] == "error":
        return (
            "ERROR",
            f"{a['operation']} failed with {a['http.status_code']} after {a['duration_ms']}ms",
        )
    level = "WARN" if a["duration_ms"] > 1000 else "INFO"
    return level, f"{a['operation']} completed in {a['duration_ms']}ms"


_EXC = ("ValidationError", "NotFoundError", "ConflictError")
_BAD_EXC = ("NullPointerException", "ConnectionResetError", "TimeoutError", "IOError")


def _app_error(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "exception.type": r.choice(_EXC),
        "exception.message": r.choice(
            ("invalid IBAN checksum", "account not found", "duplicate request id")
        ),
        "code.function": r.choice(("handle_request", "validate_payload", "load_account")),
        "http.status_code": r.choice((400, 404, 409)),
        "handled": True,
    }


def _app_error_anomaly(c: Ctx, a: Attrs) -> Attrs:
    messages = {
        "disk_full": ("IOError", "No space left on device"),
        "db_pool_exhaustion": (
            "TimeoutError",
            "timed out waiting for a pooled connection after 30s",
        ),
        "database_deadlock": ("ConnectionResetError", "deadlock detected; transaction rolled back"),
        "connection_timeout": ("TimeoutError", "connect timed out to upstream after 10s"),
    }
    exc, msg = messages.get(c.anomaly_type, ("NullPointerException", "unexpected null in handler"))
    return {
        "exception.type": exc,
        "exception.message": msg,
        "http.status_code": 500,
        "handled": False,
    }


def _app_error_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["handled"] else "ERROR"
    return level, f"{a['exception.type']} in {a['code.function']}: {a['exception.message']}"


def _cache(c: Ctx) -> Attrs:
    r = c.rng
    hit = r.random() < 0.92
    return {
        "cache.name": r.choice(("sessions", "accounts", "fx-rates")),
        "cache.operation": "get",
        "cache.hit": hit,
        "duration_ms": ms(r, 0.2, 2.5),
        "cache.hit_ratio": round(r.uniform(0.88, 0.97), 3),
        "evictions": r.randrange(0, 5),
    }


def _cache_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "cache.hit": False,
        "cache.hit_ratio": round(0.5 * (1 - c.k) + c.rng.uniform(0, 0.1), 3),
        "evictions": a["evictions"] + 1000 + int(50_000 * c.k),
        "duration_ms": between(c, 8, 60),
    }


def _cache_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["cache.hit_ratio"] < 0.7 else "DEBUG"
    word = "hit" if a["cache.hit"] else "miss"
    return (
        level,
        f"cache {a['cache.name']} {word} ({a['duration_ms']}ms, hit ratio {a['cache.hit_ratio']})",
    )


def _threads(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "pool.name": "http-workers",
        "pool.max": 200,
        "pool.active": r.randrange(15, 70),
        "pool.queued": r.randrange(0, 5),
        "pool.rejected": 0,
    }


def _threads_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "pool.active": 200,
        "pool.queued": 50 + int(c.rng.uniform(0, 2000) * c.k),
        "pool.rejected": 1 + int(c.rng.uniform(0, 300) * c.k),
    }


def _threads_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["pool.active"] >= a["pool.max"] else "DEBUG"
    return level, (
        f"{a['pool.name']}: {a['pool.active']}/{a['pool.max']} active, "
        f"{a['pool.queued']} queued, {a['pool.rejected']} rejected"
    )


register(
    "api_gateway_log",
    CAT,
    ("api-gateway",),
    "Requests through the API gateway",
    _gateway,
    _gateway_anomaly,
    _gateway_text,
)
register(
    "application_error_log",
    CAT,
    ALL_SERVICES,
    "Exceptions raised by service code",
    _app_error,
    _app_error_anomaly,
    _app_error_text,
)
register(
    "service_request_log",
    CAT,
    ALL_SERVICES,
    "Requests handled by a service",
    _request,
    _request_anomaly,
    _request_text,
)
register(
    "cache_operation_log",
    CAT,
    ("account-service", "auth-service", "user-service", "payment-service"),
    "Cache reads and writes",
    _cache,
    _cache_anomaly,
    _cache_text,
)
register(
    "thread_pool_log",
    CAT,
    ALL_SERVICES,
    "Worker thread pool occupancy",
    _threads,
    _threads_anomaly,
    _threads_text,
)

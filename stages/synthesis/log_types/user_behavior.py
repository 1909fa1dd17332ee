"""User behaviour logs: sessions, logins, clicks, profile changes, devices."""

from __future__ import annotations

from stages.synthesis.log_types.registry import Attrs, Ctx, between, customer_ip, register

CAT = "user_behavior"
USERS = ("user-service",)
PAGES = ("/home", "/accounts", "/payments/new", "/cards", "/settings", "/statements")


def _session(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "session.id": f"ses_{r.getrandbits(48):012x}",
        "user.id": c.user_id,
        "duration_s": r.randrange(30, 900),
        "pages": r.randrange(2, 25),
        "event": r.choice(("session_start", "session_end")),
        "bot_score": round(r.uniform(0, 0.2), 2),
    }


def _session_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "churn_spike":
        return {
            "event": "account_closure_flow",
            "pages": 1,
            "duration_s": r_round(c, 5, 40),
            "bot_score": a["bot_score"],
        }
    return {
        "event": "session_start",
        "pages": 300 + int(c.rng.uniform(0, 3000) * c.k),
        "duration_s": r_round(c, 1, 20),
        "bot_score": between(c, 0.85, 0.99),
    }


def r_round(c: Ctx, low: int, high: int) -> int:
    return c.rng.randrange(low, high)


def _session_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["bot_score"] > 0.8 else "INFO"
    return (
        level,
        f"{a['event']} {a['session.id']} user {a['user.id']}: "
        f"{a['pages']} pages in {a['duration_s']}s",
    )


def _login_activity(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "user.id": c.user_id,
        "client.ip": customer_ip(r),
        "geo.country": r.choice(("DE", "DE", "FR", "NL")),
        "failed_attempts_1h": r.randrange(0, 2),
        "new_device": False,
        "result": "success",
    }


def _login_activity_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "user.id": c.focus_user,
        "client.ip": c.focus_ip,
        "geo.country": "RU",
        "failed_attempts_1h": 10 + int(c.rng.uniform(0, 800) * c.k),
        "result": "failure",
    }


def _login_activity_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["failed_attempts_1h"] > 5 else "INFO"
    return level, (
        f"login {a['result']} for {a['user.id']} from {a['client.ip']} ({a['geo.country']}), "
        f"{a['failed_attempts_1h']} failures in the last hour"
    )


def _click(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "session.id": f"ses_{r.getrandbits(48):012x}",
        "page": r.choice(PAGES),
        "element": r.choice(("nav", "button.primary", "link")),
        "dwell_ms": r.randrange(800, 40_000),
        "user_agent": r.choice(("Mozilla/5.0 (iPhone)", "Mozilla/5.0 (Windows NT 10.0)")),
    }


def _click_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {"dwell_ms": c.rng.randrange(5, 120), "user_agent": "python-requests/2.32"}


def _click_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["dwell_ms"] < 200 else "DEBUG"
    return level, f"click {a['element']} on {a['page']} after {a['dwell_ms']}ms"


def _profile(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "user.id": c.user_id,
        "field": r.choice(("address", "marketing_opt_in", "nickname")),
        "channel": "app",
        "verified_by": "session",
        "device.known": True,
    }


def _profile_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "user.id": c.focus_user,
        "field": c.rng.choice(("email", "phone", "password")),
        "verified_by": "none",
        "device.known": False,
    }


def _profile_text(a: Attrs) -> tuple[str, str]:
    level = "INFO" if a["device.known"] else "WARN"
    return (
        level,
        f"profile {a['field']} changed for {a['user.id']} "
        f"via {a['channel']} (verified by {a['verified_by']})",
    )


def _device(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "user.id": c.user_id,
        "device.id": f"dev_{r.getrandbits(40):010x}",
        "device.os": r.choice(("iOS 18", "Android 15")),
        "first_seen_days": r.randrange(30, 900),
        "emulator": False,
        "risk": "low",
    }


def _device_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "user.id": c.focus_user,
        "device.id": f"dev_{c.rng.getrandbits(40):010x}",
        "first_seen_days": 0,
        "emulator": c.k > 0.4,
        "risk": "high",
    }


def _device_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["risk"] == "high" else "DEBUG"
    return level, f"device {a['device.id']} ({a['device.os']}) for {a['user.id']}: risk {a['risk']}"


register(
    "user_session_log",
    CAT,
    USERS,
    "Session starts and ends",
    _session,
    _session_anomaly,
    _session_text,
)
register(
    "login_activity_log",
    CAT,
    ("auth-service", "user-service"),
    "Per-user login history",
    _login_activity,
    _login_activity_anomaly,
    _login_activity_text,
)
register(
    "clickstream_log",
    CAT,
    ("api-gateway", "user-service"),
    "Page and element interactions",
    _click,
    _click_anomaly,
    _click_text,
)
register(
    "profile_change_log",
    CAT,
    USERS,
    "Changes to customer profiles",
    _profile,
    _profile_anomaly,
    _profile_text,
)
register(
    "device_fingerprint_log",
    CAT,
    ("auth-service", "user-service"),
    "Device recognition",
    _device,
    _device_anomaly,
    _device_text,
)

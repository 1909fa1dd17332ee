"""Security logs: authentication, authorisation, firewall, TLS, intrusion detection."""

from __future__ import annotations

from stages.common import estate
from stages.synthesis.log_types.registry import (
    Attrs,
    Ctx,
    between,
    customer_ip,
    internal_ip,
    ms,
    register,
)

CAT = "security"
EDGE = ("api-gateway",)


def _auth(c: Ctx) -> Attrs:
    r = c.rng
    locked = c.account_state == "locked"
    failed = not locked and r.random() < 0.03
    outcome = "denied" if locked else "failure" if failed else "success"
    reason = "account_locked" if locked else "bad_password" if failed else ""
    return {
        "user.id": c.user_id,
        "account.id": c.account_id,
        "client.ip": customer_ip(r),
        "auth.method": r.choice(("password", "password+otp", "biometric")),
        "outcome": outcome,
        "failure_reason": reason,
        "attempt": 1,
    }


def _auth_anomaly(c: Ctx, a: Attrs) -> Attrs:
    # brute force: one attacker address hammering one account with wrong passwords
    return {
        "user.id": c.focus_user,
        "account.id": c.focus_account,
        "client.ip": c.focus_ip,
        "outcome": "failure",
        "failure_reason": "bad_password",
        "attempt": 5 + int(c.rng.uniform(0, 500) * c.k),
    }


def _auth_text(a: Attrs) -> tuple[str, str]:
    if a["outcome"] == "success":
        return "INFO", f"login succeeded for {a['user.id']} from {a['client.ip']}"
    level = "ERROR" if a["attempt"] > 5 else "WARN"
    return level, (
        f"login {a['outcome']} for {a['user.id']} (account {a['account.id']}) "
        f"from {a['client.ip']}: {a['failure_reason']}, attempt {a['attempt']}"
    )


def _authz(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "user.id": c.user_id,
        "role": "customer",
        "resource": f"/accounts/{c.account_id}",
        "action": r.choice(("read", "read", "update")),
        "decision": "allow",
        "policy": "owner-only",
    }


def _authz_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "user.id": c.focus_user,
        "role": "admin",
        "resource": "/admin/users",
        "action": c.rng.choice(("grant_role", "export", "delete")),
        "policy": "break-glass",
    }


def _authz_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["role"] == "admin" else "INFO"
    return (
        level,
        f"{a['decision']} {a['action']} on {a['resource']} "
        f"for {a['user.id']} ({a['role']}, {a['policy']})",
    )


def _firewall(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "src.ip": customer_ip(r),
        "dst.ip": internal_ip(r),
        "dst.port": r.choice((443, 443, 8443)),
        "protocol": "tcp",
        "action": "allow",
        "rule": "allow-https",
        "ports_probed": 1,
    }


def _firewall_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "src.ip": c.focus_ip,
        "dst.port": c.rng.choice((22, 23, 3389, 5432, 6379, 9200)),
        "action": "deny",
        "rule": "default-deny",
        "ports_probed": 50 + int(c.rng.uniform(0, 60_000) * c.k),
    }


def _firewall_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["action"] == "deny" else "DEBUG"
    return (
        level,
        f"{a['action']} {a['protocol']} {a['src.ip']} -> "
        f"{a['dst.ip']}:{a['dst.port']} ({a['rule']})",
    )


def _tls(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "client.ip": customer_ip(r),
        "tls.version": r.choice(("TLSv1.3", "TLSv1.3", "TLSv1.2")),
        "tls.cipher": "TLS_AES_128_GCM_SHA256",
        "outcome": "success",
        "error": "",
        "handshake_ms": ms(r, 2, 30),
        "cert.days_to_expiry": r.randrange(20, 360),
    }


def _tls_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "outcome": "failure",
        "error": c.rng.choice(("certificate_expired", "bad_certificate")),
        "handshake_ms": between(c, 100, 3000),
        "cert.days_to_expiry": -1 - int(30 * c.k),
    }


def _tls_text(a: Attrs) -> tuple[str, str]:
    if a["outcome"] != "success":
        return "ERROR", f"TLS handshake with {a['client.ip']} failed: {a['error']}"
    return (
        "DEBUG",
        f"TLS {a['tls.version']} handshake with {a['client.ip']} in {a['handshake_ms']}ms",
    )


def _ids(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "src.ip": customer_ip(r),
        "signature": "none",
        "severity": "info",
        "events_1m": r.randrange(0, 3),
        "target": c.service,
        "blocked": False,
    }


def _ids_anomaly(c: Ctx, a: Attrs) -> Attrs:
    sig = "ET SCAN Nmap SYN" if c.anomaly_type == "port_scan" else "Brute force login attempts"
    return {
        "src.ip": c.focus_ip,
        "signature": sig,
        "severity": "high" if c.k < 0.8 else "critical",
        "events_1m": 100 + int(c.rng.uniform(0, 5000) * c.k),
        "blocked": c.k > 0.5,
    }


def _ids_text(a: Attrs) -> tuple[str, str]:
    if a["signature"] == "none":
        return "DEBUG", f"no signatures matched for {a['src.ip']}"
    return (
        "WARN",
        f"IDS {a['severity']}: {a['signature']} from {a['src.ip']} ({a['events_1m']}/min)",
    )


register(
    "authentication_log",
    CAT,
    ("auth-service",),
    "Login attempts and their outcome",
    _auth,
    _auth_anomaly,
    _auth_text,
)
register(
    "authorization_log",
    CAT,
    ("auth-service", "user-service", "account-service"),
    "Access decisions on resources",
    _authz,
    _authz_anomaly,
    _authz_text,
)
register(
    "firewall_log",
    CAT,
    EDGE,
    "Edge firewall decisions",
    _firewall,
    _firewall_anomaly,
    _firewall_text,
)
register(
    "tls_handshake_log", CAT, EDGE, "TLS handshakes at the edge", _tls, _tls_anomaly, _tls_text
)
register(
    "intrusion_detection_log",
    CAT,
    tuple(estate.SERVICE_NAMES[:2]),
    "IDS signature matches",
    _ids,
    _ids_anomaly,
    _ids_text,
)

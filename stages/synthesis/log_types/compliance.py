"""Compliance logs: audit trail, data access, KYC, regulatory reports, GDPR."""

from __future__ import annotations

from stages.synthesis.log_types.registry import Attrs, Ctx, register

CAT = "compliance"
COMPLIANCE = ("compliance-service",)


def _audit(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "actor": c.user_id,
        "action": r.choice(("view_statement", "update_limit", "login")),
        "target": c.account_id,
        "privileged": False,
        "result": "success",
        "ledger_balanced": True,
    }


def _audit_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "ledger_mismatch":
        return {
            "actor": "ledger-reconciler",
            "action": "ledger_reconcile",
            "privileged": True,
            "ledger_balanced": False,
            "result": "failure",
        }
    return {
        "actor": c.focus_user,
        "action": c.rng.choice(("grant_admin", "bulk_export", "disable_mfa")),
        "privileged": True,
        "ledger_balanced": a["ledger_balanced"],
        "result": a["result"],
    }


def _audit_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["privileged"] or not a["ledger_balanced"] else "INFO"
    return level, f"audit: {a['actor']} {a['action']} on {a['target']} -> {a['result']}"


def _data_access(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "user.id": c.user_id,
        "dataset": r.choice(("customers", "transactions", "cards")),
        "records_read": r.randrange(1, 50),
        "purpose": "customer_support",
        "pii": r.random() < 0.5,
    }


def _data_access_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "user.id": c.focus_user,
        "records_read": 10_000 + int(c.rng.uniform(0, 2e6) * c.k),
        "purpose": "unspecified",
        "pii": True,
    }


def _data_access_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["records_read"] > 1000 else "INFO"
    return level, f"{a['user.id']} read {a['records_read']} {a['dataset']} records ({a['purpose']})"


def _kyc(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "user.id": c.user_id,
        "check": r.choice(("id_document", "address", "liveness")),
        "status": "passed",
        "vendor": "IDnow",
        "wait_minutes": r.randrange(1, 30),
        "queue_size": r.randrange(0, 40),
    }


def _kyc_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "status": "pending",
        "wait_minutes": 240 + int(c.rng.uniform(0, 4000) * c.k),
        "queue_size": 500 + int(c.rng.uniform(0, 20_000) * c.k),
    }


def _kyc_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["status"] == "pending" else "INFO"
    return level, f"KYC {a['check']} for {a['user.id']} {a['status']} after {a['wait_minutes']}min"


def _report(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "report": r.choice(("AnaCredit", "FINREP", "COREP")),
        "period": "2025-Q3",
        "status": "submitted",
        "rows": r.randrange(10_000, 900_000),
        "hours_to_deadline": r.randrange(48, 400),
    }


def _report_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {"status": "delayed", "hours_to_deadline": int(24 * (1 - c.k))}


def _report_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["status"] == "delayed" else "INFO"
    return (
        level,
        f"regulatory report {a['report']} {a['period']} "
        f"{a['status']} ({a['hours_to_deadline']}h to deadline)",
    )


def _gdpr(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "request.type": r.choice(("access", "erasure", "rectification")),
        "subject": c.user_id,
        "requested_by": "subject",
        "status": "completed",
        "days_open": r.randrange(1, 20),
    }


def _gdpr_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "request.type": "access",
        "requested_by": c.focus_user,
        "status": "fulfilled_without_verification",
    }


def _gdpr_text(a: Attrs) -> tuple[str, str]:
    level = "INFO" if a["requested_by"] == "subject" else "WARN"
    return (
        level,
        f"GDPR {a['request.type']} request for {a['subject']} "
        f"by {a['requested_by']}: {a['status']}",
    )


register(
    "audit_trail_log",
    CAT,
    (*COMPLIANCE, "ledger-service"),
    "Who did what to which record",
    _audit,
    _audit_anomaly,
    _audit_text,
)
register(
    "data_access_log",
    CAT,
    (*COMPLIANCE, "user-service"),
    "Reads of customer data",
    _data_access,
    _data_access_anomaly,
    _data_access_text,
)
register(
    "kyc_verification_log",
    CAT,
    (*COMPLIANCE, "user-service"),
    "Know-your-customer checks",
    _kyc,
    _kyc_anomaly,
    _kyc_text,
)
register(
    "regulatory_report_log",
    CAT,
    (*COMPLIANCE, "reporting-service"),
    "Regulatory submissions",
    _report,
    _report_anomaly,
    _report_text,
)
register(
    "gdpr_request_log", CAT, COMPLIANCE, "Data subject requests", _gdpr, _gdpr_anomaly, _gdpr_text
)

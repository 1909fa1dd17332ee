"""Fraud and anti-money-laundering logs."""

from __future__ import annotations

from stages.synthesis.log_types.registry import Attrs, Ctx, between, register

CAT = "fraud_aml"
FRAUD = ("fraud-detection",)


def _score(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "account.id": c.account_id,
        "fraud.score": round(r.uniform(0, 25), 1),
        "model": "gbm-v7",
        "decision": "allow",
        "top_feature": r.choice(("amount", "merchant", "geo")),
    }


def _score_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "account.id": c.focus_account,
        "fraud.score": between(c, 75, 99.9),
        "decision": "review",
        "top_feature": "amount_velocity",
    }


def _score_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["fraud.score"] > 70 else "INFO"
    return (
        level,
        f"fraud score {a['fraud.score']} for {a['account.id']} ({a['model']}): {a['decision']}",
    )


def _aml(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "account.id": c.account_id,
        "rule": "none",
        "risk": "low",
        "transactions_24h": r.randrange(0, 8),
        "sum_24h": round(r.uniform(0, 2000), 2),
        "sar_filed": False,
    }


def _aml_anomaly(c: Ctx, a: Attrs) -> Attrs:
    n = 10 + int(c.rng.uniform(0, 60) * c.k)
    return {
        "account.id": c.focus_account,
        "rule": "structuring",
        "risk": "high",
        "transactions_24h": n,
        "sum_24h": round(n * 9_500, 2),
        "sar_filed": c.k > 0.6,
    }


def _aml_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["risk"] == "high" else "INFO"
    return (
        level,
        f"AML screening {a['account.id']}: risk {a['risk']} "
        f"(rule {a['rule']}, {a['transactions_24h']} txns)",
    )


def _velocity(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "account.id": c.account_id,
        "window_s": 3600,
        "count": r.randrange(0, 6),
        "limit": 20,
        "exceeded": False,
    }


def _velocity_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "account.id": c.focus_account,
        "count": 21 + int(c.rng.uniform(0, 200) * c.k),
        "exceeded": True,
    }


def _velocity_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["exceeded"] else "DEBUG"
    return level, f"velocity {a['account.id']}: {a['count']}/{a['limit']} per {a['window_s']}s"


def _card_alert(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "card.last4": f"{r.randrange(10_000):04d}",
        "account.id": c.account_id,
        "alert": "none",
        "amount": round(r.uniform(3, 200), 2),
        "country": "DE",
        "action": "none",
    }


def _card_alert_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "account.id": c.focus_account,
        "alert": "card_not_present_burst",
        "amount": between(c, 1_500, 20_000),
        "country": c.rng.choice(("NG", "RU", "BR")),
        "action": "block_card" if c.k > 0.5 else "step_up",
    }


def _card_alert_text(a: Attrs) -> tuple[str, str]:
    if a["alert"] == "none":
        return "DEBUG", f"card *{a['card.last4']} checked, no alert"
    return (
        "ERROR",
        f"card *{a['card.last4']} {a['alert']}: {a['amount']} in {a['country']}, {a['action']}",
    )


def _sanctions(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "account.id": c.account_id,
        "counterparty": r.choice(("ACME GmbH", "J. Smith", "Globex Ltd")),
        "list": "EU-consolidated",
        "match_score": round(r.uniform(0, 30), 1),
        "hit": False,
    }


def _sanctions_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "account.id": c.focus_account,
        "counterparty": "Petro Trading FZE",
        "match_score": between(c, 85, 100),
        "hit": True,
    }


def _sanctions_text(a: Attrs) -> tuple[str, str]:
    level = "ERROR" if a["hit"] else "DEBUG"
    return (
        level,
        f"sanctions check {a['counterparty']} against {a['list']}: score {a['match_score']}",
    )


register(
    "fraud_score_log",
    CAT,
    FRAUD,
    "Model scores per transaction",
    _score,
    _score_anomaly,
    _score_text,
)
register(
    "aml_screening_log",
    CAT,
    (*FRAUD, "compliance-service"),
    "AML rule screening",
    _aml,
    _aml_anomaly,
    _aml_text,
)
register(
    "velocity_check_log",
    CAT,
    FRAUD,
    "Transaction velocity limits",
    _velocity,
    _velocity_anomaly,
    _velocity_text,
)
register(
    "card_fraud_alert_log",
    CAT,
    FRAUD,
    "Card fraud alerts",
    _card_alert,
    _card_alert_anomaly,
    _card_alert_text,
)
register(
    "sanctions_check_log",
    CAT,
    (*FRAUD, "compliance-service"),
    "Sanctions list screening",
    _sanctions,
    _sanctions_anomaly,
    _sanctions_text,
)

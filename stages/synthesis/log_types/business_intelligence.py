"""Business intelligence logs: revenue, churn, product usage, funnels, daily summaries."""

from __future__ import annotations

from stages.synthesis.log_types.registry import Attrs, Ctx, register

CAT = "business_intelligence"
BI = ("reporting-service",)
PRODUCTS = ("current_account", "credit_card", "savings", "mortgage", "fx")


def _drop(c: Ctx, value: float) -> float:
    """A business figure that falls further the stronger the anomaly is."""
    return round(value * (0.6 - 0.5 * c.k), 2)


def _revenue(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "window": "1m",
        "revenue.eur": round(r.uniform(8_000, 14_000), 2),
        "transactions": r.randrange(2_000, 3_200),
        "avg_ticket.eur": round(r.uniform(60, 95), 2),
        "vs_last_week_pct": round(r.uniform(-6, 6), 1),
    }


def _revenue_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "revenue.eur": _drop(c, a["revenue.eur"]),
        "transactions": int(_drop(c, a["transactions"])),
        "vs_last_week_pct": round(-40 - 50 * c.k, 1),
    }


def _revenue_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["vs_last_week_pct"] < -20 else "INFO"
    return (
        level,
        f"revenue {a['revenue.eur']} EUR in {a['window']} ({a['vs_last_week_pct']}% vs last week)",
    )


def _churn(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "segment": r.choice(("retail", "premium", "student")),
        "closures_1h": r.randrange(0, 6),
        "churn_rate_pct": round(r.uniform(0.05, 0.3), 2),
        "top_reason": r.choice(("moved_abroad", "deceased", "other")),
    }


def _churn_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "closures_1h": 40 + int(c.rng.uniform(0, 600) * c.k),
        "churn_rate_pct": round(1.5 + 6 * c.k, 2),
        "top_reason": "fees",
    }


def _churn_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["churn_rate_pct"] > 1 else "INFO"
    return (
        level,
        f"churn {a['segment']}: {a['closures_1h']} closures/h, "
        f"rate {a['churn_rate_pct']}% ({a['top_reason']})",
    )


def _usage(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "product": r.choice(PRODUCTS),
        "active_users": r.randrange(5_000, 60_000),
        "sessions_per_user": round(r.uniform(2, 6), 2),
        "feature": r.choice(("instant_transfer", "card_freeze", "budgets")),
    }


def _usage_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "active_users": int(_drop(c, a["active_users"])),
        "sessions_per_user": _drop(c, a["sessions_per_user"]),
    }


def _usage_text(a: Attrs) -> tuple[str, str]:
    return (
        "INFO",
        f"{a['product']}: {a['active_users']} active users, {a['sessions_per_user']} sessions each",
    )


def _funnel(c: Ctx) -> Attrs:
    r = c.rng
    started = r.randrange(800, 1500)
    return {
        "funnel": "checkout",
        "started": started,
        "completed": int(started * r.uniform(0.6, 0.8)),
        "conversion_pct": 0.0,
        "drop_step": "none",
    }


def _funnel_complete(a: Attrs) -> Attrs:
    a["conversion_pct"] = round(100 * a["completed"] / max(1, a["started"]), 1)
    return a


def _funnel_normal(c: Ctx) -> Attrs:
    return _funnel_complete(_funnel(c))


def _funnel_anomaly(c: Ctx, a: Attrs) -> Attrs:
    completed = int(a["started"] * (0.3 - 0.28 * c.k))
    return {
        "completed": completed,
        "conversion_pct": round(100 * completed / max(1, a["started"]), 1),
        "drop_step": "payment_confirmation",
    }


def _funnel_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["conversion_pct"] < 50 else "INFO"
    return (
        level,
        f"funnel {a['funnel']}: {a['completed']}/{a['started']} converted ({a['conversion_pct']}%)",
    )


def _daily(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "date": "yesterday",
        "revenue.eur": round(r.uniform(1.1e7, 1.5e7), 2),
        "new_accounts": r.randrange(300, 800),
        "payments": r.randrange(2_500_000, 3_500_000),
        "status": "normal",
    }


def _daily_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "revenue.eur": _drop(c, a["revenue.eur"]),
        "payments": int(_drop(c, a["payments"])),
        "status": "below_forecast",
    }


def _daily_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["status"] != "normal" else "INFO"
    return (
        level,
        f"daily summary: revenue {a['revenue.eur']} EUR, "
        f"{a['payments']} payments, {a['new_accounts']} new accounts",
    )


register(
    "revenue_metric_log",
    CAT,
    (*BI, "payment-service"),
    "Revenue per minute",
    _revenue,
    _revenue_anomaly,
    _revenue_text,
)
register(
    "customer_churn_log",
    CAT,
    BI,
    "Account closures by segment",
    _churn,
    _churn_anomaly,
    _churn_text,
)
register(
    "product_usage_log",
    CAT,
    (*BI, "user-service"),
    "Product and feature usage",
    _usage,
    _usage_anomaly,
    _usage_text,
)
register(
    "conversion_funnel_log",
    CAT,
    BI,
    "Checkout funnel conversion",
    _funnel_normal,
    _funnel_anomaly,
    _funnel_text,
)
register(
    "daily_summary_log", CAT, BI, "Daily business summary", _daily, _daily_anomaly, _daily_text
)

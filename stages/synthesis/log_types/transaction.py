"""Transaction logs: payments, ledger entries, transfers, settlements, refunds."""

from __future__ import annotations

from stages.synthesis.log_types.registry import Attrs, Ctx, between, register

CAT = "transaction"
MERCHANTS = ("Tesco", "Amazon", "Shell", "Uber", "Spotify", "IKEA", "Lidl", "Apple")
CURRENCIES = ("EUR", "EUR", "GBP", "USD")


def _money(c: Ctx, low: float = 3, high: float = 180) -> float:
    return round(c.rng.uniform(low, high), 2)


def _payment(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "payment.id": f"pay_{r.getrandbits(40):010x}",
        "account.id": c.account_id,
        "payment.amount": _money(c),
        "currency": r.choice(CURRENCIES),
        "merchant": r.choice(MERCHANTS),
        "card.last4": f"{r.randrange(10_000):04d}",
        "outcome": "approved",
        "decline_reason": "",
        "counterparty.country": "DE",
    }


_PAYMENT_ANOMALOUS = (
    "account.id",
    "payment.amount",
    "merchant",
    "counterparty.country",
    "outcome",
    "decline_reason",
)


def _payment_anomaly(c: Ctx, a: Attrs) -> Attrs:
    out = {key: a[key] for key in _PAYMENT_ANOMALOUS}
    if c.anomaly_type == "transaction_failures":
        out.update({"outcome": "failed", "decline_reason": "processor_unavailable"})
    elif c.anomaly_type == "sanctions_hit":
        out.update(
            {
                "account.id": c.focus_account,
                "counterparty.country": c.rng.choice(("IR", "KP", "SY")),
                "outcome": "held",
                "decline_reason": "sanctions_review",
            }
        )
    else:
        out.update(
            {
                "account.id": c.focus_account,
                "payment.amount": between(c, 2_000, 25_000),
                "merchant": c.rng.choice(("CryptoXchange", "GiftCardHub", "WireNow")),
            }
        )
    return out


def _payment_text(a: Attrs) -> tuple[str, str]:
    level = {"approved": "INFO", "held": "WARN"}.get(a["outcome"], "ERROR")
    tail = f": {a['decline_reason']}" if a["decline_reason"] else ""
    return level, (
        f"payment {a['payment.id']} {a['payment.amount']} {a['currency']} at "
        f"{a['merchant']} {a['outcome']}{tail}"
    )


def _ledger(c: Ctx) -> Attrs:
    r = c.rng
    amount = _money(c, 5, 900)
    return {
        "entry.id": f"le_{r.getrandbits(40):010x}",
        "account.id": c.account_id,
        "debit": amount,
        "credit": amount,
        "balanced": True,
        "entry.type": "payment",
    }


def _ledger_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "refund_spike":
        # a refund reverses the posting: the entry still balances, only its type differs
        return {"entry.type": "refund", "credit": a["credit"], "balanced": a["balanced"]}
    return {
        "entry.type": a["entry.type"],
        "credit": round(a["debit"] * (2 + c.k), 2),
        "balanced": False,
    }


def _ledger_text(a: Attrs) -> tuple[str, str]:
    level = "INFO" if a["balanced"] else "ERROR"
    return level, (
        f"ledger {a['entry.type']} {a['entry.id']}: debit {a['debit']} credit "
        f"{a['credit']} ({'balanced' if a['balanced'] else 'UNBALANCED'})"
    )


def _transfer(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "transfer.id": f"tr_{r.getrandbits(40):010x}",
        "from.account": c.account_id,
        "to.account": f"acc-{r.randrange(10**6):06d}",
        "amount": _money(c, 10, 1500),
        "channel": r.choice(("app", "web", "standing_order")),
        "new_payee": False,
        "outcome": "completed",
    }


def _transfer_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "money_laundering":
        # structuring: just under the 10,000 reporting threshold
        return {
            "from.account": c.focus_account,
            "amount": round(9_000 + c.rng.uniform(0, 990), 2),
            "new_payee": True,
        }
    return {
        "from.account": c.focus_account,
        "amount": between(c, 3_000, 40_000),
        "new_payee": True,
    }


def _transfer_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["new_payee"] and a["amount"] > 5_000 else "INFO"
    return (
        level,
        f"transfer {a['transfer.id']} {a['amount']} from "
        f"{a['from.account']} to {a['to.account']} {a['outcome']}",
    )


def _settlement(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "batch.id": f"stl_{r.getrandbits(32):08x}",
        "scheme": r.choice(("SEPA", "VISA", "MC")),
        "items": r.randrange(200, 5000),
        "mismatches": 0,
        "status": "settled",
        "duration_s": round(r.uniform(20, 180), 1),
    }


def _settlement_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "mismatches": 1 + int(c.rng.uniform(0, 400) * c.k),
        "status": "failed",
        "duration_s": between(c, 600, 3600),
    }


def _settlement_text(a: Attrs) -> tuple[str, str]:
    level = "INFO" if a["status"] == "settled" else "ERROR"
    return (
        level,
        f"settlement {a['batch.id']} ({a['scheme']}, {a['items']} "
        f"items) {a['status']}, {a['mismatches']} mismatches",
    )


def _refund(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "refund.id": f"rf_{r.getrandbits(40):010x}",
        "account.id": c.account_id,
        "amount": _money(c, 2, 120),
        "reason": r.choice(("duplicate", "returned_goods")),
        "refunds_24h": r.randrange(0, 3),
        "status": "completed",
    }


def _refund_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {"reason": "defective_product", "refunds_24h": 20 + int(c.rng.uniform(0, 500) * c.k)}


def _refund_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["refunds_24h"] > 10 else "INFO"
    return level, f"refund {a['refund.id']} of {a['amount']} ({a['reason']}) {a['status']}"


PAY = ("payment-service",)
register(
    "payment_transaction_log",
    CAT,
    PAY,
    "Card and account payments",
    _payment,
    _payment_anomaly,
    _payment_text,
)
register(
    "ledger_entry_log",
    CAT,
    ("ledger-service",),
    "Double-entry ledger postings",
    _ledger,
    _ledger_anomaly,
    _ledger_text,
)
register(
    "transfer_log",
    CAT,
    ("account-service", "payment-service"),
    "Account-to-account transfers",
    _transfer,
    _transfer_anomaly,
    _transfer_text,
)
register(
    "settlement_log",
    CAT,
    ("ledger-service", "payment-service"),
    "Scheme settlement batches",
    _settlement,
    _settlement_anomaly,
    _settlement_text,
)
register("refund_log", CAT, PAY, "Refunds to customers", _refund, _refund_anomaly, _refund_text)

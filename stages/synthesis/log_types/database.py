"""Database logs: queries, pools, slow queries, replication, deadlocks."""

from __future__ import annotations

from stages.common import estate
from stages.synthesis.log_types.registry import Attrs, Ctx, between, ms, register

CAT = "database"
DB_SERVICES = tuple(s.name for s in estate.SERVICES if s.databases)
_TABLES = ("accounts", "transactions", "users", "payments", "ledger_entries", "sessions")


def _query(c: Ctx) -> Attrs:
    r = c.rng
    table = r.choice(_TABLES)
    return {
        "db.system": "postgresql",
        "db.name": c.database(),
        "db.operation": r.choice(("SELECT", "SELECT", "INSERT", "UPDATE")),
        "db.table": table,
        "duration_ms": ms(r, 0.4, 25),
        "rows": r.randrange(0, 60),
        "outcome": "ok",
    }


def _query_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type in ("database_deadlock", "db_pool_exhaustion"):
        outcome = "deadlock" if c.anomaly_type == "database_deadlock" else "pool_timeout"
        return {"duration_ms": between(c, 1000, 30_000), "outcome": outcome}
    if c.anomaly_type == "replica_lag":
        return {"duration_ms": between(c, 60, 400), "outcome": "stale_read"}
    return {"duration_ms": between(c, 300, 12_000), "outcome": "slow"}


def _query_text(a: Attrs) -> tuple[str, str]:
    level = {"ok": "DEBUG", "slow": "WARN", "stale_read": "WARN"}.get(a["outcome"], "ERROR")
    return level, (
        f"{a['db.operation']} {a['db.table']} on {a['db.name']} "
        f"took {a['duration_ms']}ms ({a['rows']} rows, {a['outcome']})"
    )


def _pool(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "db.name": c.database(),
        "pool.max": 100,
        "pool.active": r.randrange(5, 40),
        "pool.idle": r.randrange(10, 40),
        "pool.waiting": 0,
        "wait_ms": ms(r, 0, 3),
    }


def _pool_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "pool.active": 100,
        "pool.idle": 0,
        "pool.waiting": 5 + int(c.rng.uniform(0, 400) * c.k),
        "wait_ms": between(c, 500, 30_000),
    }


def _pool_text(a: Attrs) -> tuple[str, str]:
    level = "ERROR" if a["pool.idle"] == 0 else "DEBUG"
    return level, (
        f"pool {a['db.name']}: {a['pool.active']}/{a['pool.max']} active, "
        f"{a['pool.waiting']} waiting ({a['wait_ms']}ms)"
    )


def _slow(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "db.name": c.database(),
        "db.statement": f"SELECT * FROM {r.choice(_TABLES)} WHERE id = $1",
        "duration_ms": ms(r, 200, 600),
        "rows_examined": r.randrange(1_000, 20_000),
        "plan": "index_scan",
    }


def _slow_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "duration_ms": between(c, 2000, 60_000),
        "rows_examined": 1_000_000 + int(c.rng.uniform(0, 50_000_000) * c.k),
        "plan": "seq_scan",
    }


def _slow_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["duration_ms"] < 2000 else "ERROR"
    return (
        level,
        f"slow query ({a['duration_ms']}ms, {a['rows_examined']} "
        f"rows, {a['plan']}): {a['db.statement']}",
    )


def _replication(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "db.name": c.database(),
        "replica": f"{c.database()}-replica-{r.randrange(1, 3)}",
        "lag_seconds": round(r.uniform(0.01, 0.8), 3),
        "state": "streaming",
        "wal.behind_bytes": r.randrange(0, 200_000),
    }


def _replication_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "lag_seconds": between(c, 15, 600),
        "state": "catchup",
        "wal.behind_bytes": 50_000_000 + int(c.rng.uniform(0, 4e9) * c.k),
    }


def _replication_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["lag_seconds"] > 5 else "DEBUG"
    return level, f"replica {a['replica']} {a['state']}, lag {a['lag_seconds']}s"


def _deadlock(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "db.name": c.database(),
        "lock.mode": "RowExclusiveLock",
        "lock.wait_ms": ms(r, 0.1, 20),
        "deadlock": False,
        "victim_txn": "",
        "tables": r.choice(_TABLES),
    }


def _deadlock_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "lock.wait_ms": between(c, 1000, 20_000),
        "deadlock": True,
        "victim_txn": f"txn-{c.rng.randrange(10**6, 10**7)}",
    }


def _deadlock_text(a: Attrs) -> tuple[str, str]:
    if a["deadlock"]:
        return "ERROR", f"deadlock detected on {a['tables']}; rolled back {a['victim_txn']}"
    return "DEBUG", f"lock {a['lock.mode']} on {a['tables']} granted after {a['lock.wait_ms']}ms"


register(
    "database_query_log",
    CAT,
    DB_SERVICES,
    "Queries against the service's database",
    _query,
    _query_anomaly,
    _query_text,
)
register(
    "connection_pool_log",
    CAT,
    DB_SERVICES,
    "Database connection pool occupancy",
    _pool,
    _pool_anomaly,
    _pool_text,
)
register(
    "slow_query_log",
    CAT,
    DB_SERVICES,
    "Queries above the slow-query threshold",
    _slow,
    _slow_anomaly,
    _slow_text,
)
register(
    "replication_log",
    CAT,
    DB_SERVICES,
    "Replica streaming status and lag",
    _replication,
    _replication_anomaly,
    _replication_text,
)
register(
    "deadlock_log",
    CAT,
    DB_SERVICES,
    "Lock waits and deadlocks",
    _deadlock,
    _deadlock_anomaly,
    _deadlock_text,
)

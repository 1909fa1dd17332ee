# ruff: noqa: E501  (the vocabulary is a table; one entry per line reads better than wrapped)
"""The shared vocabulary of Stage 00: log type names, metrics, and anomaly archetypes.

Synthesis implements a generator for every log type named here (a test holds the two equal);
the orchestrator builds its 200+ scenarios from the archetypes applied to targets; synthesis
applies an archetype's effects when a record falls inside an anomaly window. Keeping the names
in one module is what lets a scenario "make payment_transaction_log anomalous" mean something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Shape = Literal[
    "gaussian_spike", "ramp", "step", "sawtooth", "oscillation", "dropout", "variance_change",
    "poisson_bursts", "exponential_decay",
]  # fmt: skip

# --- Log types: name -> category ----------------------------------------------------------------
LOG_TYPE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "infrastructure": (
        "system_resource_log", "container_event_log", "kubernetes_event_log", "disk_usage_log",
        "host_health_log",
    ),
    "application": (
        "api_gateway_log", "application_error_log", "service_request_log", "cache_operation_log",
        "thread_pool_log",
    ),
    "database": (
        "database_query_log", "connection_pool_log", "slow_query_log", "replication_log",
        "deadlock_log",
    ),
    "security": (
        "authentication_log", "authorization_log", "firewall_log", "tls_handshake_log",
        "intrusion_detection_log",
    ),
    "transaction": (
        "payment_transaction_log", "ledger_entry_log", "transfer_log", "settlement_log",
        "refund_log",
    ),
    "fraud_aml": (
        "fraud_score_log", "aml_screening_log", "velocity_check_log", "card_fraud_alert_log",
        "sanctions_check_log",
    ),
    "user_behavior": (
        "user_session_log", "login_activity_log", "clickstream_log", "profile_change_log",
        "device_fingerprint_log",
    ),
    "compliance": (
        "audit_trail_log", "data_access_log", "kyc_verification_log", "regulatory_report_log",
        "gdpr_request_log",
    ),
    "integration": (
        "message_queue_log", "webhook_delivery_log", "third_party_api_log", "batch_job_log",
        "event_bus_log",
    ),
    "monitoring": (
        "health_check_log", "alert_log", "sla_breach_log", "circuit_breaker_log",
        "rate_limiter_log",
    ),
    "business_intelligence": (
        "revenue_metric_log", "customer_churn_log", "product_usage_log", "conversion_funnel_log",
        "daily_summary_log",
    ),
    "specialized": (
        "gc_activity_log", "dns_resolution_log", "load_balancer_log", "service_mesh_log",
        "cdn_log",
    ),
    "network": ("network_traffic_log", "network_latency_log", "packet_loss_log"),
}  # fmt: skip
LOG_TYPES: dict[str, str] = {
    name: category for category, names in LOG_TYPE_CATEGORIES.items() for name in names
}


# --- Metrics: name -> (unit, baseline, lowest, highest) ----------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    unit: str
    baseline: float
    low: float
    high: float


METRICS: dict[str, MetricSpec] = {
    "cpu.utilization": MetricSpec("percent", 35, 0, 100),
    "memory.utilization": MetricSpec("percent", 55, 0, 100),
    "disk.utilization": MetricSpec("percent", 60, 0, 100),
    "disk.io_wait": MetricSpec("ms", 4, 0, 5_000),
    "latency.p95": MetricSpec("ms", 120, 0, 60_000),
    "error.rate": MetricSpec("percent", 0.5, 0, 100),
    "request.rate": MetricSpec("requests/s", 250, 0, 100_000),
    "db.connections.active": MetricSpec("connections", 20, 0, 200),
    "db.query.duration": MetricSpec("ms", 15, 0, 60_000),
    "db.deadlocks": MetricSpec("count", 0, 0, 10_000),
    "db.replica.lag": MetricSpec("s", 0.2, 0, 3_600),
    "queue.depth": MetricSpec("messages", 50, 0, 10_000_000),
    "thread_pool.active": MetricSpec("threads", 40, 0, 1_000),
    "cache.hit_ratio": MetricSpec("percent", 92, 0, 100),
    "gc.pause": MetricSpec("ms", 12, 0, 60_000),
    "container.restarts": MetricSpec("count", 0, 0, 1_000),
    "network.latency": MetricSpec("ms", 2, 0, 60_000),
    "network.packet_loss": MetricSpec("percent", 0.01, 0, 100),
    "dns.lookup": MetricSpec("ms", 3, 0, 60_000),
    "tls.handshake_failures": MetricSpec("count", 0, 0, 100_000),
    "rate_limit.rejections": MetricSpec("count", 0, 0, 1_000_000),
    "circuit_breaker.open": MetricSpec("state", 0, 0, 1),
    "lb.request_share": MetricSpec("percent", 33, 0, 100),
    "auth.failures": MetricSpec("count", 1, 0, 1_000_000),
    "payment.amount": MetricSpec("usd", 80, 0, 10_000_000),
    "transaction.rate": MetricSpec("transactions/s", 40, 0, 100_000),
    "fraud.score": MetricSpec("score", 8, 0, 100),
}

TargetKind = Literal["service", "database", "queue", "host", "account", "user"]


@dataclass(frozen=True)
class MetricEffect:
    """An anomaly moves ``metric`` from its baseline to ``factor`` x baseline (or to ``peak``
    for metrics whose baseline is ~0) following ``shape``, scaled by the anomaly's intensity."""

    metric: str
    shape: Shape
    factor: float = 1.0
    peak: float | None = None


@dataclass(frozen=True)
class Archetype:
    anomaly_type: str
    category: str
    severity: Literal["low", "medium", "high", "critical"]
    description: str
    target: TargetKind
    metrics: tuple[MetricEffect, ...]
    log_types: tuple[str, ...]
    state_effect: tuple[str, str] | None = None  # (entity kind, new state) of the target
    root_cause: str = ""
    correlated_effects: tuple[str, ...] = field(default_factory=tuple)
    default_intensity: int = 70
    default_duration_seconds: int = 60
    seed_type: bool = False  # one of the seed's eight one-click types


M = MetricEffect
ARCHETYPES: tuple[Archetype, ...] = (
    # --- the seed's eight ---------------------------------------------------------------------
    Archetype(
        "cpu_spike", "infrastructure", "high", "CPU saturates on the service's hosts",
        "service",
        (M("cpu.utilization", "gaussian_spike", 2.6), M("latency.p95", "gaussian_spike", 3.0)),
        ("system_resource_log", "service_request_log", "api_gateway_log"),
        ("service", "degraded"), "runaway batch job", ("slower requests", "timeouts"),
        seed_type=True,
    ),
    Archetype(
        "memory_leak", "infrastructure", "high", "Memory grows steadily until the process is killed",
        "service", (M("memory.utilization", "ramp", 1.75), M("gc.pause", "ramp", 8.0)),
        ("system_resource_log", "gc_activity_log", "container_event_log"),
        ("service", "degraded"), "unbounded cache", ("GC pressure", "OOM kill"),
        default_duration_seconds=120, seed_type=True,
    ),
    Archetype(
        "database_slow", "database", "high", "Queries slow down on the service's database",
        "database",
        (M("db.query.duration", "ramp", 25.0), M("latency.p95", "ramp", 4.0)),
        ("database_query_log", "slow_query_log", "service_request_log"),
        ("database", "degraded"), "missing index after migration", ("request latency",),
        seed_type=True,
    ),
    Archetype(
        "network_latency", "network", "medium", "Round trips between services get slow",
        "service",
        (M("network.latency", "step", 40.0), M("latency.p95", "step", 2.5)),
        ("network_latency_log", "service_mesh_log", "api_gateway_log"),
        None, "congested link", ("timeouts",), seed_type=True,
    ),
    Archetype(
        "auth_failure", "security", "critical",
        "Brute-force logins from one IP against one account, which gets locked", "account",
        (M("auth.failures", "poisson_bursts", peak=400),),
        ("authentication_log", "login_activity_log", "intrusion_detection_log"),
        ("account", "locked"), "credential stuffing", ("account lockout",), seed_type=True,
    ),
    Archetype(
        "payment_fraud", "fraud", "critical", "A burst of high-value payments from one account",
        "account",
        (M("payment.amount", "poisson_bursts", 40.0), M("fraud.score", "step", peak=92)),
        ("payment_transaction_log", "fraud_score_log", "card_fraud_alert_log"),
        ("account", "suspended"), "stolen card", ("chargebacks",), seed_type=True,
    ),
    Archetype(
        "api_errors", "application", "high", "A share of API requests fail with 5xx",
        "service",
        (M("error.rate", "step", peak=35), M("request.rate", "oscillation", 1.2)),
        ("api_gateway_log", "application_error_log", "service_request_log"),
        ("service", "degraded"), "bad deploy", ("retries", "client errors"), seed_type=True,
    ),
    Archetype(
        "disk_full", "infrastructure", "high", "A host's disk fills up and writes start failing",
        "host", (M("disk.utilization", "ramp", 1.65), M("disk.io_wait", "ramp", 20.0)),
        ("disk_usage_log", "host_health_log", "application_error_log"),
        ("host", "degraded"), "log rotation stopped", ("write errors",), seed_type=True,
    ),
    # --- infrastructure and platform ----------------------------------------------------------
    Archetype(
        "db_pool_exhaustion", "database", "critical", "Every pooled connection is in use",
        "database",
        (M("db.connections.active", "ramp", peak=200), M("latency.p95", "ramp", 6.0)),
        ("connection_pool_log", "database_query_log", "application_error_log"),
        ("database", "degraded"), "connection leak", ("request timeouts",),
    ),
    Archetype(
        "disk_io_bottleneck", "infrastructure", "medium", "Disk I/O wait dominates request time",
        "host", (M("disk.io_wait", "oscillation", 30.0), M("db.query.duration", "oscillation", 5.0)),
        ("disk_usage_log", "slow_query_log"), ("host", "degraded"), "noisy neighbour",
    ),
    Archetype(
        "api_degradation", "application", "medium", "Latency creeps up across the API",
        "service", (M("latency.p95", "ramp", 5.0), M("error.rate", "ramp", peak=8)),
        ("api_gateway_log", "service_request_log", "sla_breach_log"), ("service", "degraded"),
        "slow dependency",
    ),
    Archetype(
        "thread_pool_saturation", "application", "high", "Worker threads are all busy",
        "service",
        (M("thread_pool.active", "step", 4.5), M("latency.p95", "step", 3.5)),
        ("thread_pool_log", "service_request_log"), ("service", "degraded"), "blocking calls",
    ),
    Archetype(
        "cache_invalidation", "application", "medium", "The cache is flushed and misses storm the DB",
        "service",
        (M("cache.hit_ratio", "exponential_decay", 0.2), M("db.query.duration", "gaussian_spike", 6.0)),
        ("cache_operation_log", "database_query_log"), None, "mass invalidation",
    ),
    Archetype(
        "load_balancer_uneven", "network", "medium", "One backend gets most of the traffic",
        "service", (M("lb.request_share", "step", 2.4), M("cpu.utilization", "step", 1.8)),
        ("load_balancer_log", "system_resource_log"), None, "sticky sessions",
    ),
    Archetype(
        "message_queue_backlog", "integration", "high", "Consumers fall behind; the queue grows",
        "queue", (M("queue.depth", "ramp", 80.0),),
        ("message_queue_log", "event_bus_log"), ("queue", "degraded"), "slow consumer",
    ),
    Archetype(
        "database_deadlock", "database", "high", "Transactions deadlock and are rolled back",
        "database", (M("db.deadlocks", "poisson_bursts", peak=60), M("error.rate", "poisson_bursts", peak=6)),
        ("deadlock_log", "database_query_log", "application_error_log"), ("database", "degraded"),
        "lock ordering bug",
    ),
    Archetype(
        "connection_timeout", "network", "high", "Outbound connections time out",
        "service", (M("network.latency", "gaussian_spike", 200.0), M("error.rate", "gaussian_spike", peak=20)),
        ("third_party_api_log", "service_request_log", "application_error_log"), None,
        "firewall change",
    ),
    Archetype(
        "gc_pressure", "infrastructure", "medium", "Long GC pauses stall the service",
        "service", (M("gc.pause", "sawtooth", 25.0), M("latency.p95", "sawtooth", 2.5)),
        ("gc_activity_log", "system_resource_log"), ("service", "degraded"), "large heap churn",
    ),
    Archetype(
        "container_oom", "infrastructure", "critical", "Containers are OOM-killed and restart",
        "service", (M("memory.utilization", "sawtooth", 1.7), M("container.restarts", "poisson_bursts", peak=12)),
        ("container_event_log", "kubernetes_event_log", "health_check_log"), ("service", "down"),
        "memory limit too low",
    ),
    Archetype(
        "service_mesh_failure", "network", "critical", "Sidecars reject traffic between services",
        "service", (M("error.rate", "step", peak=45), M("network.latency", "step", 20.0)),
        ("service_mesh_log", "api_gateway_log"), ("service", "down"), "expired mTLS cert",
    ),
    Archetype(
        "dns_resolution_slow", "network", "medium", "DNS lookups take seconds",
        "service", (M("dns.lookup", "oscillation", 150.0), M("latency.p95", "oscillation", 2.0)),
        ("dns_resolution_log", "third_party_api_log"), None, "resolver overload",
    ),
    Archetype(
        "ssl_handshake_failure", "security", "high", "TLS handshakes fail",
        "service", (M("tls.handshake_failures", "step", peak=300), M("error.rate", "step", peak=15)),
        ("tls_handshake_log", "api_gateway_log"), ("service", "degraded"), "certificate expired",
    ),
    Archetype(
        "rate_limit_exceeded", "application", "medium", "Clients hit the rate limiter",
        "service", (M("rate_limit.rejections", "poisson_bursts", peak=900), M("request.rate", "gaussian_spike", 3.0)),
        ("rate_limiter_log", "api_gateway_log"), None, "retry storm",
    ),
    Archetype(
        "circuit_breaker_open", "application", "high", "Circuit breakers open to a failing dependency",
        "service", (M("circuit_breaker.open", "step", peak=1), M("error.rate", "step", peak=25)),
        ("circuit_breaker_log", "service_request_log"), ("service", "degraded"),
        "dependency outage",
    ),
    Archetype(
        "replica_lag", "database", "medium", "Read replicas fall behind the primary",
        "database", (M("db.replica.lag", "ramp", peak=240),),
        ("replication_log", "database_query_log"), ("database", "degraded"), "long transaction",
    ),
    Archetype(
        "network_partition", "network", "critical", "Packets are lost between zones",
        "service", (M("network.packet_loss", "step", peak=30), M("error.rate", "step", peak=30)),
        ("packet_loss_log", "network_traffic_log", "health_check_log"), ("service", "down"),
        "switch failure",
    ),
    Archetype(
        "traffic_surge", "application", "medium", "Request rate triples",
        "service", (M("request.rate", "gaussian_spike", 3.0), M("cpu.utilization", "gaussian_spike", 1.9)),
        ("api_gateway_log", "load_balancer_log", "cdn_log"), None, "marketing campaign",
    ),
    Archetype(
        "health_check_flapping", "monitoring", "medium", "Health checks alternate between pass and fail",
        "service", (M("error.rate", "oscillation", peak=12),),
        ("health_check_log", "alert_log"), ("service", "degraded"), "tight timeouts",
    ),
    Archetype(
        "metrics_dropout", "monitoring", "low", "A service stops reporting request metrics",
        "service", (M("request.rate", "dropout", 0.0),),
        ("health_check_log", "alert_log"), None, "agent crash",
    ),
    Archetype(
        "latency_jitter", "network", "low", "Latency variance grows without a mean shift",
        "service", (M("latency.p95", "variance_change", 4.0),),
        ("network_latency_log", "service_request_log"), None, "Wi-Fi bridge in the path",
    ),
    # --- security, fraud, business, compliance ------------------------------------------------
    Archetype(
        "privilege_escalation", "security", "critical", "A user gains admin rights and uses them",
        "user", (M("auth.failures", "step", peak=40),),
        ("authorization_log", "audit_trail_log", "data_access_log"), ("user", "suspended"),
        "stolen admin session",
    ),
    Archetype(
        "port_scan", "security", "medium", "An external host probes many ports",
        "service", (M("network.packet_loss", "poisson_bursts", peak=3),),
        ("firewall_log", "intrusion_detection_log", "network_traffic_log"), None, "reconnaissance",
    ),
    Archetype(
        "money_laundering", "fraud", "critical", "Structured transfers just under reporting limits",
        "account", (M("transaction.rate", "poisson_bursts", 4.0), M("fraud.score", "ramp", peak=85)),
        ("transfer_log", "aml_screening_log", "velocity_check_log"), ("account", "suspended"),
        "mule account",
    ),
    Archetype(
        "account_takeover", "fraud", "critical", "A new device changes the profile and empties the account",
        "account", (M("fraud.score", "step", peak=95), M("payment.amount", "gaussian_spike", 25.0)),
        ("device_fingerprint_log", "profile_change_log", "transfer_log"), ("account", "locked"),
        "phishing",
    ),
    Archetype(
        "sanctions_hit", "fraud", "high", "Payments to a sanctioned counterparty",
        "account", (M("fraud.score", "step", peak=80),),
        ("sanctions_check_log", "payment_transaction_log"), ("account", "suspended"),
        "sanctions list update",
    ),
    Archetype(
        "transaction_failures", "transaction", "high", "Payments fail at the processor",
        "service", (M("error.rate", "step", peak=30), M("transaction.rate", "step", 0.4)),
        ("payment_transaction_log", "settlement_log", "third_party_api_log"),
        ("service", "degraded"), "processor outage",
    ),
    Archetype(
        "refund_spike", "transaction", "medium", "Refund requests jump",
        "service", (M("transaction.rate", "gaussian_spike", 2.5),),
        ("refund_log", "ledger_entry_log"), None, "faulty product batch",
    ),
    Archetype(
        "ledger_mismatch", "transaction", "critical", "Ledger entries stop balancing",
        "service", (M("error.rate", "step", peak=5),),
        ("ledger_entry_log", "settlement_log", "audit_trail_log"), ("service", "degraded"),
        "double posting bug",
    ),
    Archetype(
        "revenue_drop", "business", "high", "Revenue per minute falls sharply",
        "service", (M("transaction.rate", "step", 0.3), M("payment.amount", "step", 0.5)),
        ("revenue_metric_log", "conversion_funnel_log", "daily_summary_log"), None,
        "checkout bug",
    ),
    Archetype(
        "churn_spike", "business", "medium", "Account closures jump",
        "service", (M("transaction.rate", "ramp", 0.6),),
        ("customer_churn_log", "product_usage_log", "user_session_log"), None, "fee change",
    ),
    Archetype(
        "bot_traffic", "user_behavior", "medium", "Scripted sessions crawl the site",
        "service", (M("request.rate", "poisson_bursts", 4.0),),
        ("clickstream_log", "user_session_log", "rate_limiter_log"), None, "scraper",
    ),
    Archetype(
        "unusual_data_access", "compliance", "high", "Bulk reads of customer records by one user",
        "user", (M("request.rate", "step", 1.5),),
        ("data_access_log", "audit_trail_log", "gdpr_request_log"), ("user", "suspended"),
        "insider exfiltration",
    ),
    Archetype(
        "kyc_backlog", "compliance", "medium", "KYC verifications pile up unprocessed",
        "queue", (M("queue.depth", "ramp", 40.0),),
        ("kyc_verification_log", "regulatory_report_log", "batch_job_log"),
        ("queue", "degraded"), "vendor outage",
    ),
    Archetype(
        "webhook_failures", "integration", "medium", "Webhook deliveries fail and retry",
        "service", (M("error.rate", "gaussian_spike", peak=40),),
        ("webhook_delivery_log", "third_party_api_log"), None, "partner endpoint down",
    ),
    Archetype(
        "batch_job_overrun", "integration", "medium", "The nightly batch runs into business hours",
        "service", (M("cpu.utilization", "step", 2.2), M("db.query.duration", "step", 3.0)),
        ("batch_job_log", "database_query_log"), None, "data volume growth",
    ),
)  # fmt: skip
BY_TYPE: dict[str, Archetype] = {a.anomaly_type: a for a in ARCHETYPES}

SEED_TYPES: tuple[str, ...] = tuple(a.anomaly_type for a in ARCHETYPES if a.seed_type)
INFRASTRUCTURE_TYPES: tuple[str, ...] = (
    "db_pool_exhaustion", "disk_io_bottleneck", "api_degradation", "thread_pool_saturation",
    "cache_invalidation", "load_balancer_uneven", "message_queue_backlog", "database_deadlock",
    "connection_timeout", "gc_pressure", "container_oom", "service_mesh_failure",
    "dns_resolution_slow", "ssl_handshake_failure", "rate_limit_exceeded", "circuit_breaker_open",
    "replica_lag", "network_partition", "traffic_surge", "health_check_flapping",
)  # fmt: skip

"""Prometheus counters of the orchestrator (prefix ``orchestrator_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS_REQUESTED = Counter(
    "orchestrator_records_requested_total", "Records asked of Log Synthesis", ["source"]
)
RECORDS_PRODUCED = Counter(
    "orchestrator_records_produced_total", "Records Log Synthesis reported producing", ["source"]
)
RECORDS_FAILED = Counter(
    "orchestrator_records_failed_total",
    "Records requested but not produced (synthesis failed after retries)",
    ["source", "reason"],
)
RECORDS_SKIPPED = Counter(
    "orchestrator_records_skipped_total",
    "Records of ticks dropped because the backlog exceeded its bound",
    ["source"],
)
SYNTHESIS_RETRIES = Counter(
    "orchestrator_synthesis_retries_total", "Synthesis calls retried", ["reason"]
)
STATE_EFFECTS = Counter(
    "orchestrator_state_effects_total",
    "State effects applied through the State Manager",
    ["outcome"],
)
WINDOWS = Counter("orchestrator_windows_total", "Ground-truth windows", ["event"])
EXECUTIONS = Counter("orchestrator_executions_total", "Executions by final status", ["status"])
CONTINUOUS_RUNNING = Gauge("orchestrator_continuous_running", "1 while a generator runs")
EMITTERS_UNKNOWN = Counter(
    "orchestrator_window_emitters_unknown_total",
    "Windows opened while synthesis's log-type catalogue could not be read",
)
ANOMALIES_SKIPPED = Counter(
    "orchestrator_anomalies_skipped_total",
    "Random anomalies drawn by the continuous generator while too many windows were open",
)

"""Request and response bodies of the orchestrator's API."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stages.common.estate import SERVICE_NAMES, WEEKLY_AMPLITUDE
from stages.common.records import StorableText
from stages.common.vocabulary import ARCHETYPES, LOG_TYPES, METRICS

CategoryName = StrEnum("CategoryName", sorted({a.category for a in ARCHETYPES}))  # type: ignore[misc]
ServiceName = StrEnum("ServiceName", {n.replace("-", "_"): n for n in SERVICE_NAMES})  # type: ignore[misc]
LogTypeName = StrEnum("LogTypeName", sorted(LOG_TYPES))  # type: ignore[misc]
MetricName = StrEnum("MetricName", {n.replace(".", "_"): n for n in sorted(METRICS)})  # type: ignore[misc]
Severity = Literal["low", "medium", "high", "critical"]
MAX_SEED = 2**31 - 1


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------------------
class ExecuteRequest(RequestBody):
    duration_seconds: float | None = Field(
        default=None, ge=1, le=3600, description="Defaults to the scenario's duration."
    )
    intensity: float | None = Field(
        default=None, ge=0, le=100, description="Defaults to the scenario's intensity."
    )
    rate: float = Field(default=10, ge=1, le=5000, description="Records per second.")
    anomalous_share: float = Field(
        default=0.7, ge=0, le=1, description="Share of the records that carry the anomaly."
    )
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)


class ContinuousStartRequest(RequestBody):
    interval_seconds: float = Field(ge=0.05, le=3600)
    logs_per_interval: int = Field(ge=1, le=10_000)
    duration_seconds: float | None = Field(
        default=None, ge=1, le=86_400, description="Omit to run until stopped."
    )
    anomaly_rate: float = Field(
        default=0.0, ge=0, le=1, description="Probability per interval of a random anomaly."
    )
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    services: list[ServiceName] | None = Field(default=None, min_length=1, max_length=64)
    log_types: list[LogTypeName] | None = Field(default=None, min_length=1, max_length=128)


class TriggerRequest(RequestBody):
    anomaly_type: StorableText = Field(min_length=1, max_length=64)
    intensity: float | None = Field(default=None, ge=0, le=100)
    duration_seconds: float | None = Field(default=None, ge=1, le=3600)
    target: StorableText | None = Field(
        default=None,
        max_length=64,
        description="Estate name (service, database, queue, host) or e.g. account-via-api-gateway;"
        " defaults to the type's first scenario.",
    )
    rate: float = Field(
        default=20, ge=1, le=5000, description="Records/s of the execution used when no "
        "continuous generator runs.",
    )  # fmt: skip


class ScheduledWindowIn(RequestBody):
    scenario_id: StorableText = Field(min_length=1, max_length=128)
    start: AwareDatetime = Field(description="Event time the window starts (inside the range).")
    duration_s: float | None = Field(
        default=None, ge=1, le=86_400, description="Defaults to the scenario's duration."
    )
    intensity: float | None = Field(
        default=None, ge=0, le=100, description="Defaults to the scenario's intensity."
    )


class HistoryAnomalies(RequestBody):
    rate_per_day: float | None = Field(
        default=None, ge=0, le=1000, description="Windows drawn per simulated day (seeded)."
    )
    schedule: list[ScheduledWindowIn] | None = Field(default=None, max_length=10_000)


class TimeRange(RequestBody):
    start: AwareDatetime
    end: AwareDatetime


class HistoryRequest(RequestBody):
    start: AwareDatetime | None = Field(default=None, description="With end; or use days.")
    end: AwareDatetime | None = Field(default=None, description="Not after now.")
    days: float | None = Field(
        default=None, gt=0, le=366, description="The range is the last this many days to now."
    )
    resolution_seconds: float = Field(default=10, ge=1, le=3600)
    services: list[ServiceName] | None = Field(default=None, min_length=1, max_length=64)
    metrics: list[MetricName] | None = Field(
        default=None, min_length=1, max_length=64, description="Default: every metric."
    )
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="Default: drawn.")
    logs_apm_per_step: int = Field(
        default=2, ge=0, le=100, description="Logs and spans per service per step."
    )
    anomalies: HistoryAnomalies | None = None
    normal_only_ranges: list[TimeRange] | None = Field(default=None, max_length=1000)
    trend_per_day: float = Field(
        default=0.01, ge=-1, le=1, description="Metric trend per day, fraction of the baseline."
    )
    weekly_amplitude: float = Field(
        default=WEEKLY_AMPLITUDE,
        ge=-1,
        le=1,
        description="Week-end change, fraction of the baseline (live traffic has the default).",
    )


# --- responses ------------------------------------------------------------------------------
class TargetOut(BaseModel):
    kind: str
    name: str
    services: list[str]


class SignalOut(BaseModel):
    metric: str
    shape: str
    unit: str
    baseline: float
    peak: float


class LogEffectOut(BaseModel):
    log_type: str
    category: str
    effect: str


class StateEffectOut(BaseModel):
    entity_type: str
    entity: str
    to_state: str


class ScenarioOut(BaseModel):
    id: str
    name: str
    anomaly_type: str
    category: str
    severity: str
    description: str
    target: TargetOut
    signals: list[SignalOut]
    log_types: list[LogEffectOut]
    state_effect: StateEffectOut | None
    root_cause: str
    correlated_effects: list[str]
    default_intensity: int
    default_duration_seconds: int


class ScenarioPage(BaseModel):
    items: list[ScenarioOut]
    total: int
    limit: int
    offset: int


class CategoriesOut(BaseModel):
    categories: dict[str, int]
    severities: dict[str, int]
    anomaly_types: list[str]


class StateEffectResultOut(BaseModel):
    entity_type: str
    entity_id: str | None
    to_state: str
    previous_state: str | None
    outcome: str
    detail: Any = None


class ExecutionOut(BaseModel):
    id: str
    scenario_id: str
    anomaly_type: str
    source: str
    status: str
    started_at: str
    ends_at: str
    ended_at: str | None
    duration_seconds: float
    intensity: float
    rate: float
    anomalous_share: float
    seed: int | None
    window_id: str
    target_entity: str | None
    state_effect: StateEffectResultOut | None
    records_requested: int
    logs_generated: int
    records_failed: int
    synthesis_retries: int
    last_error: str | None


class ExecutionPage(BaseModel):
    items: list[ExecutionOut]
    total: int


class WindowScopeOut(BaseModel):
    logs: dict[str, list[str]] = Field(description="Log type -> the services it covers.")
    metrics: dict[str, list[str]] = Field(description="Metric -> the services it covers.")
    apm: list[str] = Field(
        description="Traces that start in the window with a span from one of these services."
    )
    hosts: list[str] = Field(
        description="When not empty, a service running one of these hosts is covered only on them."
    )


class WindowOut(BaseModel):
    id: str
    scenario_id: str
    anomaly_type: str
    services: list[str] = Field(description="Every service the scope names.")
    metrics: list[str]
    log_types: list[str]
    scope: WindowScopeOut
    target_entity: str | None
    start: str
    planned_end: str
    end: str | None
    intensity: float
    ramp_seconds: float
    source: str


class GroundTruthPage(BaseModel):
    items: list[WindowOut]
    total: int
    # Relative: an answer never reveals where the server keeps its files.
    jsonl_path: str = Field(description="The JSONL copy, relative to the orchestrator's DATA_DIR.")


class ContinuousStats(BaseModel):
    running: bool
    started_at: str | None
    can_keep_up: bool
    elapsed_seconds: float = 0.0
    config: dict[str, Any] | None = None
    requested_rate: float = 0.0
    measured_rate: float = 0.0
    measured_rate_recent: float = 0.0
    records_requested: int = 0
    records_produced: int = 0
    records_failed: int = 0
    records_skipped: int = 0
    synthesis_calls: int = 0
    synthesis_retries: int = 0
    last_error: str | None = None
    ticks: int = 0
    ticks_behind: int = 0
    max_ticks_behind: int = 0
    ticks_skipped: int = 0
    anomalies_started: int = 0
    anomalies_skipped: int = 0
    active_anomalies: list[WindowOut] = Field(default_factory=list)


class TriggerOut(BaseModel):
    mode: Literal["continuous", "execution"]
    window: WindowOut
    state_effect: StateEffectResultOut | None
    execution: ExecutionOut | None


class HistoryOut(BaseModel):
    id: str
    status: Literal["running", "completed", "failed", "stopped"]
    start: str
    end: str
    resolution_seconds: float
    services: list[str]
    seed: int
    started_at: str
    finished_at: str | None
    elapsed_seconds: float
    chunks_total: int
    chunks_done: int
    generated_until: str | None = Field(description="Event time up to which every chunk is done.")
    records_planned: int
    records_requested: int
    records_accepted: int = Field(description="Records ingestion accepted (synthesis's count).")
    records_failed: int
    synthesis_calls: int
    synthesis_retries: int
    records_per_second: float
    simulated_days_per_minute: float
    windows_planned: int
    windows: list[WindowOut] = Field(description="Windows recorded so far.")
    errors: list[str]


class HistoryPage(BaseModel):
    items: list[HistoryOut]

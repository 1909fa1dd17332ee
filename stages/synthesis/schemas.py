"""Request and response models of the synthesis API (bounds are part of the contract)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from stages.common.estate import WEEKLY_AMPLITUDE

MAX_COUNT = 5000
MAX_WINDOWS = 256
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _in_supported_range(moment: datetime) -> datetime:
    # far-off years overflow epoch arithmetic; no scenario needs them
    if not EARLIEST <= moment < LATEST:
        raise ValueError("times must be between 2000-01-01 and 2100-01-01")
    return moment


Moment = Annotated[AwareDatetime, AfterValidator(_in_supported_range)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
EntityId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
RecordKind = Literal["log", "metric", "apm"]


class ScopeRequest(BaseModel):
    """Which records a window covers (see ``stages.synthesis.scope``); names must be the
    archetype's own log types and metrics."""

    model_config = ConfigDict(extra="forbid")

    logs: dict[Name, list[Name]] = Field(
        default_factory=dict, max_length=20, description="Log type -> the services it covers."
    )
    metrics: dict[Name, list[Name]] = Field(
        default_factory=dict, max_length=20, description="Metric -> the services it covers."
    )
    apm: list[Name] = Field(
        default_factory=list,
        max_length=20,
        description="Traces through these services (started in the window) are covered.",
    )
    hosts: list[Name] = Field(
        default_factory=list,
        max_length=20,
        description="When given, records of a service running one of these hosts are covered "
        "only when they come from one of them.",
    )

    @model_validator(mode="after")
    def _groups_are_bounded(self) -> ScopeRequest:
        for group in (*self.logs.values(), *self.metrics.values()):
            if not 1 <= len(group) <= 20:
                raise ValueError("each log type and metric covers 1..20 services")
        return self


class AnomalyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anomaly_type: Name = Field(description="One of the catalogue's archetypes (e.g. cpu_spike).")
    scenario_id: str = Field(min_length=1, max_length=128)
    intensity: float = Field(70, ge=0, le=100)
    window_start: Moment
    window_end: Moment
    target_service: Name | None = None
    target_entity: EntityId | None = Field(
        None, description="An account/user id, or a host, database or queue of the estate."
    )
    scope: ScopeRequest | None = Field(
        None,
        description="The records this window covers; default: the archetype's log types, "
        "metrics and spans from the target service.",
    )

    @model_validator(mode="after")
    def _window_has_length(self) -> AnomalyRequest:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if (self.window_end - self.window_start).total_seconds() > 31 * 24 * 3600:
            raise ValueError("an anomaly window lasts at most 31 days")
        return self


class SeriesRequest(BaseModel):
    """Metric series on a grid: every metric of every requested service, one value per step."""

    model_config = ConfigDict(extra="forbid")

    step_seconds: float = Field(ge=1, le=3600, description="Seconds between two values.")
    metrics: list[Name] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Only these metrics (each service keeps those it reports); default all.",
    )
    trend_origin: Moment | None = Field(
        None, description="Where the linear trend is 0; default the request's timestamp."
    )
    trend_per_day: float = Field(
        0.0, ge=-1, le=1, description="Linear trend per day, as a fraction of the baseline."
    )
    weekly_amplitude: float = Field(
        WEEKLY_AMPLITUDE,
        ge=-1,
        le=1,
        description="Week-end change, as a fraction of the baseline (negative: quieter); "
        "metric records without a grid have the default.",
    )


class SynthesizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(
        ge=0,
        le=MAX_COUNT,
        description=f"Records to make, 1..{MAX_COUNT} (0 allowed with series); with series, "
        "the logs and spans besides the grid.",
    )
    kinds: list[RecordKind] = Field(
        default_factory=lambda: ["log", "metric", "apm"],
        min_length=1,
        max_length=3,
        description="Mixed ~70/20/10 (log/metric/apm), renormalised over the kinds given.",
    )
    log_types: list[Name] | None = Field(None, min_length=1, max_length=100)
    services: list[Name] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="Background records come from these services only; anomalous ones from the "
        "anomaly's target service (and the services that emit its log types).",
    )
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    timestamp: Moment | None = Field(None, description="Start time; default now.")
    spread_seconds: float = Field(
        0,
        ge=0,
        le=86_400,
        description="Timestamps are spread evenly over [timestamp, timestamp + this).",
    )
    anomaly: AnomalyRequest | None = None
    windows: list[AnomalyRequest] = Field(
        default_factory=list,
        max_length=MAX_WINDOWS,
        description="Other anomaly windows open meanwhile: every record that falls in one's "
        "scope is labelled with it and carries its anomaly.",
    )
    anomalous_share: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of records inside the anomaly window that carry it (logs and "
        "metrics one by one, APM spans a whole trace at a time); the rest are background.",
    )
    series: SeriesRequest | None = Field(
        None,
        description="Metric records as a grid over [timestamp, timestamp + spread_seconds): "
        "one per step, service and metric, hosts in turn. The other kinds make up count; "
        f"count plus the grid is at most {MAX_COUNT}.",
    )
    forward: bool = False
    return_records: bool = True

    @model_validator(mode="after")
    def _series_fits(self) -> SynthesizeRequest:
        if self.series is None:
            if self.count < 1:
                raise ValueError("count must be at least 1 without series")
            return self
        if self.timestamp is None:
            raise ValueError("series needs an explicit timestamp")
        if self.count and not set(self.kinds) - {"metric"}:
            raise ValueError("with series, count is made of logs and spans: add them to kinds")
        steps = series_steps(self.spread_seconds, self.series.step_seconds)
        if steps < 1:
            raise ValueError("spread_seconds must hold at least one series step")
        return self

    def total(self) -> int:
        """Every record the request makes: count plus the series grid."""
        if self.series is None:
            return self.count
        from stages.synthesis.metric_records import series_grid_size

        return self.count + series_grid_size(self)


def series_steps(spread_seconds: float, step_seconds: float) -> int:
    """Grid instants in [timestamp, timestamp + spread): a step falling on the end belongs to
    the next request."""
    return max(0, -int(-spread_seconds // step_seconds)) if spread_seconds > 0 else 0


class SynthesizeResponse(BaseModel):
    count: int
    forwarded: int
    anomalous: int
    records: list[dict[str, Any]]


class LogTypeInfo(BaseModel):
    name: str
    category: str
    kind: Literal["log"] = "log"
    services: list[str]
    fields: list[str]
    anomalous_fields: list[str]
    anomaly_types: list[str] = Field(description="Archetypes that make this type anomalous.")
    description: str

"""Request and response models of the synthesis API (bounds are part of the contract)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

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


class SynthesizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=MAX_COUNT, description=f"Records to make, 1..{MAX_COUNT}.")
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
    forward: bool = False
    return_records: bool = True


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

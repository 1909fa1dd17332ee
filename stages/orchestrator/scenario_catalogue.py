"""The scenario catalogue: every archetype of ``stages.common.vocabulary`` applied to each target
of its kind in the simulated estate.

A scenario is a concrete, runnable definition: which services emit the anomalous records, which
metrics move and how far, which log types turn anomalous, and which entity changes state. Ids are
stable (``<anomaly_type>--<target>``) so ground truth and bookmarks survive restarts. Account and
user scenarios name the entity kind only; the concrete id is picked from the State Manager when
the scenario runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from stages.common import estate
from stages.common.vocabulary import ARCHETYPES, LOG_TYPES, METRICS, Archetype, MetricEffect

SEVERITIES = ("low", "medium", "high", "critical")

# The service that owns the business entity an account/user archetype abuses; the scenario
# variants differ by the service the abuse comes through.
HOME_SERVICE: dict[str, str] = {
    "auth_failure": "auth-service",
    "payment_fraud": "payment-service",
    "money_laundering": "account-service",
    "account_takeover": "account-service",
    "sanctions_hit": "payment-service",
    "privilege_escalation": "user-service",
    "unusual_data_access": "compliance-service",
}
ENTITY_CHANNELS = ("api-gateway", "home", "fraud-detection")


@dataclass(frozen=True)
class Target:
    kind: str  # service | database | queue | host | account | user
    name: str  # estate name, or the entity kind for account/user (id picked at run time)
    services: tuple[str, ...]  # services whose records carry the anomaly; the first is primary

    @property
    def primary_service(self) -> str:
        return self.services[0]


@dataclass(frozen=True)
class Signal:
    metric: str
    shape: str
    unit: str
    baseline: float
    peak: float


@dataclass(frozen=True)
class LogEffect:
    log_type: str
    category: str
    effect: str


@dataclass(frozen=True)
class StateEffect:
    entity_type: str
    entity: str  # estate name, or "<picked at execution>" for business entities
    to_state: str


@dataclass(frozen=True)
class Scenario:
    id: str
    name: str
    anomaly_type: str
    category: str
    severity: str
    description: str
    target: Target
    signals: tuple[Signal, ...]
    log_types: tuple[LogEffect, ...]
    state_effect: StateEffect | None
    root_cause: str
    correlated_effects: tuple[str, ...]
    default_intensity: int
    default_duration_seconds: int

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(s.metric for s in self.signals)

    @property
    def log_type_names(self) -> tuple[str, ...]:
        return tuple(e.log_type for e in self.log_types)


def signal_for(effect: MetricEffect) -> Signal:
    """Baseline -> peak at full intensity, kept inside the metric's physical range."""
    spec = METRICS[effect.metric]
    peak = effect.peak if effect.peak is not None else spec.baseline * effect.factor
    return Signal(
        metric=effect.metric,
        shape=effect.shape,
        unit=spec.unit,
        baseline=spec.baseline,
        peak=round(min(max(peak, spec.low), spec.high), 4),
    )


def targets_for(archetype: Archetype) -> Iterator[Target]:
    kind = archetype.target
    if kind == "service":
        for service in estate.SERVICES:
            yield Target("service", service.name, (service.name, *service.calls[:1]))
    elif kind == "database":
        for database in estate.DATABASES:
            users = tuple(s.name for s in estate.SERVICES if database in s.databases)
            yield Target("database", database, users)
    elif kind == "queue":
        for queue in estate.QUEUES:
            users = tuple(s.name for s in estate.SERVICES if queue in s.queues)
            yield Target("queue", queue, users)
    elif kind == "host":
        for service in estate.SERVICES:
            for host in service.hosts:
                yield Target("host", host, (service.name,))
    else:
        home = HOME_SERVICE.get(archetype.anomaly_type, "account-service")
        for channel in ENTITY_CHANNELS:
            via = home if channel == "home" else channel
            services = (via,) if via == home else (via, home)
            yield Target(kind, f"{kind}-via-{via}", services)


def scenario_id(anomaly_type: str, target_name: str) -> str:
    return f"{anomaly_type}--{target_name}"


def build_scenario(archetype: Archetype, target: Target) -> Scenario:
    title = archetype.anomaly_type.replace("_", " ").capitalize()
    business = target.kind in ("account", "user")
    where = f"one {target.kind} via {target.services[0]}" if business else target.name
    state = None
    if archetype.state_effect is not None:
        entity_type, to_state = archetype.state_effect
        same_entity = entity_type == target.kind and not business
        entity = target.name if same_entity else "<picked at execution>"
        state = StateEffect(entity_type, entity, to_state)
    return Scenario(
        id=scenario_id(archetype.anomaly_type, target.name),
        name=f"{title} on {where}",
        anomaly_type=archetype.anomaly_type,
        category=archetype.category,
        severity=archetype.severity,
        description=f"{archetype.description} ({target.kind} {target.name}; "
        f"records from {', '.join(target.services)}).",
        target=target,
        signals=tuple(signal_for(m) for m in archetype.metrics),
        log_types=tuple(
            LogEffect(
                name,
                LOG_TYPES[name],
                f"anomalous variant on {target.primary_service}: {archetype.description.lower()}",
            )
            for name in archetype.log_types
        ),
        state_effect=state,
        root_cause=archetype.root_cause,
        correlated_effects=archetype.correlated_effects,
        default_intensity=archetype.default_intensity,
        default_duration_seconds=archetype.default_duration_seconds,
    )


def build_catalogue(archetypes: Iterable[Archetype] = ARCHETYPES) -> dict[str, Scenario]:
    scenarios: dict[str, Scenario] = {}
    for archetype in archetypes:
        for target in targets_for(archetype):
            scenario = build_scenario(archetype, target)
            scenarios[scenario.id] = scenario
    return scenarios


class ScenarioCatalogue:
    """The scenarios, looked up by id or by anomaly type, and filtered for the list API."""

    def __init__(self, scenarios: dict[str, Scenario] | None = None) -> None:
        self._scenarios = scenarios if scenarios is not None else build_catalogue()
        self._by_type: dict[str, list[Scenario]] = {}
        for scenario in self._scenarios.values():
            self._by_type.setdefault(scenario.anomaly_type, []).append(scenario)

    def __len__(self) -> int:
        return len(self._scenarios)

    def all(self) -> list[Scenario]:
        return list(self._scenarios.values())

    def get(self, scenario_id: str) -> Scenario | None:
        return self._scenarios.get(scenario_id)

    def anomaly_types(self) -> list[str]:
        return sorted(self._by_type)

    def for_type(self, anomaly_type: str) -> list[Scenario]:
        return list(self._by_type.get(anomaly_type, ()))

    def search(
        self, *, category: str | None = None, severity: str | None = None, q: str | None = None
    ) -> list[Scenario]:
        needle = q.lower() if q else None
        return [
            s
            for s in self._scenarios.values()
            if (category is None or s.category == category)
            and (severity is None or s.severity == severity)
            and (needle is None or needle in _search_text(s))
        ]

    def categories(self) -> dict[str, int]:
        return dict(sorted(Counter(s.category for s in self._scenarios.values()).items()))

    def severities(self) -> dict[str, int]:
        counts = Counter(s.severity for s in self._scenarios.values())
        return {severity: counts[severity] for severity in SEVERITIES if counts[severity]}


def _search_text(scenario: Scenario) -> str:
    return " ".join(
        (scenario.id, scenario.name, scenario.description, scenario.root_cause, scenario.category)
    ).lower()

"""The domain entry point: a synthesize request in, canonical record dicts out.

Records are built as plain dicts (validating each one with pydantic would cost more than making
it); the tests validate samples of every kind and log type against ``Record``. With a seed, every
random choice comes from one ``random.Random`` so the same request gives the same records, apart
from event ids and, when no timestamp is given, the time.

Labels follow the windows' scopes (``stages.synthesis.scope``): a record is anomalous exactly
when it falls in the scope of the request's ``anomaly`` or of one of its ``windows``.
"""

from __future__ import annotations

import random
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from stages.common import estate
from stages.common.records import format_timestamp
from stages.common.vocabulary import BY_TYPE, LOG_TYPES, METRICS, Archetype, MetricEffect
from stages.synthesis import apm
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.errors import NothingToGenerate, TooManyRecords, UnknownTargetEntity
from stages.synthesis.log_types import REGISTRY, Ctx, LogType
from stages.synthesis.metric_records import (
    LIVE,
    METRICS_BY_SERVICE,
    MetricSlot,
    Shape,
    metric_values,
    series_metrics,
)
from stages.synthesis.schemas import MAX_COUNT, AnomalyRequest, SynthesizeRequest, series_steps
from stages.synthesis.scope import (
    EPOCH,
    Scope,
    check_names,
    default_scope,
    epoch_ms_ceil,
    explicit_scope,
)

SOURCE = "log-synthesis"
KIND_WEIGHTS = {"log": 0.7, "metric": 0.2, "apm": 0.1}
# Categories whose records belong to a request and so carry its trace context.
TRACED_CATEGORIES = frozenset(
    {
        "application",
        "database",
        "security",
        "transaction",
        "fraud_aml",
        "integration",
        "user_behavior",
        "specialized",
    }
)
ANOMALY_TYPES_BY_LOG_TYPE: dict[str, tuple[str, ...]] = {
    name: tuple(a.anomaly_type for a in BY_TYPE.values() if name in a.log_types)
    for name in LOG_TYPES
}


@dataclass(frozen=True, eq=False)
class ActiveAnomaly:
    """An anomaly request resolved against the estate and the entity pool."""

    archetype: Archetype
    scenario_id: str
    intensity: float
    start: float
    end: float
    start_ms: int
    end_ms: int
    service: str
    host: str | None
    focus_account: str
    focus_user: str
    focus_ip: str
    scope: Scope
    log_pairs: tuple[tuple[str, str], ...]  # what its own anomalous logs are drawn from
    metric_pairs: tuple[tuple[str, str], ...]
    effects: dict[str, MetricEffect]

    def covers(self, ms: int) -> bool:
        return self.start_ms <= ms < self.end_ms


class RoundRobin:
    """Items in turn from a random start, so that a request's anomalous records show every
    signal of the anomaly's scope as soon as there are as many records as signals."""

    def __init__(self, items: tuple[tuple[str, str], ...], rng: random.Random) -> None:
        self.items = items
        self.turn = rng.randrange(len(items)) if items else 0

    def next(self) -> tuple[str, str]:
        item = self.items[self.turn % len(self.items)]
        self.turn += 1
        return item


@dataclass
class Batch:
    records: list[dict[str, Any]]
    anomalous: int


# --- validation and resolution ------------------------------------------------------------------


def normal_log_types(req: SynthesizeRequest) -> dict[str, tuple[str, ...]]:
    """log type -> the requested services that emit it (all emitters without a filter)."""
    check_names("log types", req.log_types, REGISTRY)
    check_names("services", req.services, estate.SERVICE_NAMES)
    wanted = set(req.services or estate.SERVICE_NAMES)
    emitters = {
        name: tuple(s for s in REGISTRY[name].services if s in wanted)
        for name in (req.log_types or REGISTRY)
    }
    usable = {name: services for name, services in emitters.items() if services}
    if not usable and "log" in req.kinds:
        raise NothingToGenerate(
            "none of the requested log types is emitted by the requested services",
            detail={name: list(REGISTRY[name].services) for name in emitters},
        )
    return usable


def resolve_anomaly(
    anomaly: AnomalyRequest, pool: EntityPool, log_types: list[str] | None = None
) -> ActiveAnomaly:
    """The anomaly's target and focus; its logs keep to ``log_types`` when they overlap."""
    check_names("anomaly type", [anomaly.anomaly_type], BY_TYPE)
    archetype = BY_TYPE[anomaly.anomaly_type]
    if anomaly.target_service is not None:
        check_names("target service", [anomaly.target_service], estate.SERVICE_NAMES)
    service, host = _target_service_and_host(archetype, anomaly)
    scenario = anomaly.scenario_id
    entity = anomaly.target_entity
    focus_account = entity if entity and archetype.target == "account" else None
    focus_user = entity if entity and archetype.target == "user" else None
    scope = (
        explicit_scope(archetype, anomaly.scope)
        if anomaly.scope is not None
        else default_scope(archetype, service, host)
    )
    return ActiveAnomaly(
        archetype=archetype,
        scenario_id=scenario,
        intensity=anomaly.intensity,
        start=anomaly.window_start.timestamp(),
        end=anomaly.window_end.timestamp(),
        start_ms=epoch_ms_ceil(anomaly.window_start),
        end_ms=epoch_ms_ceil(anomaly.window_end),
        service=service,
        host=host,
        focus_account=focus_account or pool.pick_stable(pool.accounts, f"{scenario}:account"),
        focus_user=focus_user or pool.pick_stable(pool.users, f"{scenario}:user"),
        focus_ip=attacker_ip(scenario),
        scope=scope,
        log_pairs=tuple(scope.log_pairs(log_types)),
        metric_pairs=tuple(scope.metric_pairs()),
        effects={effect.metric: effect for effect in archetype.metrics},
    )


def attacker_ip(scenario_id: str) -> str:
    """One external address per scenario, from a range no ordinary customer record uses."""
    h = zlib.crc32(scenario_id.encode())
    return f"185.220.{(h >> 8) % 256}.{h % 254 + 1}"


def _target_service_and_host(
    archetype: Archetype, anomaly: AnomalyRequest
) -> tuple[str, str | None]:
    entity = anomaly.target_entity
    owner: str | None = None
    host: str | None = None
    if entity and archetype.target in ("host", "database", "queue"):
        owner, host = _owner_of(archetype.target, entity)
    service = anomaly.target_service or owner or default_target_service(archetype)
    if host is not None and host not in estate.BY_NAME[service].hosts:
        raise UnknownTargetEntity(f"host {entity} does not belong to {service}")
    if archetype.target == "host" and host is None:
        hosts = estate.BY_NAME[service].hosts
        host = hosts[zlib.crc32(anomaly.scenario_id.encode()) % len(hosts)]
    return service, host


def _owner_of(kind: str, entity: str) -> tuple[str, str | None]:
    for spec in estate.SERVICES:
        if kind == "host" and entity in spec.hosts:
            return spec.name, entity
        if (kind == "database" and entity in spec.databases) or (
            kind == "queue" and entity in spec.queues
        ):
            return spec.name, None
    valid = {"host": estate.HOSTS, "database": estate.DATABASES, "queue": estate.QUEUES}[kind]
    raise UnknownTargetEntity(
        f"unknown {kind} {entity!r} for this anomaly", detail={"valid": list(valid)}
    )


def default_target_service(archetype: Archetype) -> str:
    """The service that emits most of the archetype's log types (estate order breaks ties)."""

    def emitted(service: str) -> int:
        return sum(service in REGISTRY[name].services for name in archetype.log_types)

    return max(estate.SERVICE_NAMES, key=emitted)


# --- the mix -------------------------------------------------------------------------------


def kind_quotas(count: int, kinds: Iterable[str]) -> dict[str, int]:
    """Split ``count`` over the kinds by their weights (largest remainder, so it adds up)."""
    chosen = list(dict.fromkeys(kinds))
    total = sum(KIND_WEIGHTS[k] for k in chosen)
    exact = {k: count * KIND_WEIGHTS[k] / total for k in chosen}
    quotas = {k: int(v) for k, v in exact.items()}
    for k in sorted(chosen, key=lambda k: exact[k] - quotas[k], reverse=True)[
        : count - sum(quotas.values())
    ]:
        quotas[k] += 1
    return quotas


def timeline(start_us: int, spread_us: int, count: int) -> list[int]:
    """``count`` instants (epoch microseconds) spread evenly over [start, start + spread): the
    next call's range starts where this one ends, so the two never share an instant."""
    return [start_us + i * spread_us // count for i in range(count)]


def anomaly_score(rng: random.Random, anomalous: bool, intensity: float) -> float:
    if anomalous:
        return round(min(100.0, 35.0 + 0.6 * intensity + rng.uniform(0, 5)), 1)
    return round(rng.uniform(0, 15), 1)


def metric_score(strength: float, intensity: float) -> float:
    """A metric's score follows how far the value really moved, scaled by intensity."""
    return round(min(100.0, 10.0 + strength * (25.0 + 0.65 * intensity)), 1)


# --- records -------------------------------------------------------------------------------


def build_log_attributes(
    spec: LogType, ctx: Ctx, anomalous: bool
) -> tuple[str, str, dict[str, Any]]:
    """(level, message, attributes) for one record; the override only touches anomalous fields."""
    attrs = spec.normal(ctx)
    if anomalous:
        attrs.update(spec.anomalous(ctx, attrs))
    level, message = spec.render(attrs)
    return level, message, attrs


class RecordMaker:
    """Makes the records of one request; holds its randomness, filters and anomalies.

    ``anomaly`` is the window the request expresses: ``anomalous_share`` of its records are
    drawn from that window's scope. Every other record is background, drawn from the request's
    services and log types, and is labelled with (and shaped by) the first window, expressed
    or listed in ``windows``, whose scope it falls in."""

    def __init__(self, req: SynthesizeRequest, pool: EntityPool, now: float) -> None:
        self.req = req
        self.pool = pool
        self.rng = random.Random(req.seed) if req.seed is not None else random.Random()
        self.seed = req.seed if req.seed is not None else self.rng.getrandbits(32)
        self.log_types = normal_log_types(req)
        self.log_type_names = sorted(self.log_types)
        self.services = tuple(req.services or estate.SERVICE_NAMES)
        self.anomaly = resolve_anomaly(req.anomaly, pool, req.log_types) if req.anomaly else None
        others = [resolve_anomaly(w, pool) for w in req.windows]
        self.windows = [self.anomaly, *others] if self.anomaly else others
        start_us = (
            (req.timestamp - EPOCH) // timedelta(microseconds=1)
            if req.timestamp
            else round(now * 1_000_000)
        )
        self.us = timeline(start_us, round(req.spread_seconds * 1_000_000), req.count)
        self.ms = [us // 1000 for us in self.us]
        pairs = (self.anomaly.log_pairs, self.anomaly.metric_pairs) if self.anomaly else ((), ())
        self.anomalous_logs = RoundRobin(pairs[0], self.rng)
        self.anomalous_metrics = RoundRobin(pairs[1], self.rng)
        self.shape = LIVE
        if req.series is not None:
            check_names("series metrics", req.series.metrics, METRICS)
            total = req.total()
            if total > MAX_COUNT:
                raise TooManyRecords(
                    f"count plus the series grid is {total} records; at most {MAX_COUNT} "
                    "(shorten spread_seconds or ask for fewer services or metrics)",
                    detail={"records": total, "max": MAX_COUNT},
                )
            origin = req.series.trend_origin or req.timestamp
            assert origin is not None  # the schema requires a timestamp with series
            self.shape = Shape(
                weekly_amplitude=req.series.weekly_amplitude,
                trend_per_day=req.series.trend_per_day,
                trend_origin=origin.timestamp(),
            )

    def make(self) -> Batch:
        count = self.req.count
        kinds_asked = (
            [k for k in self.req.kinds if k != "metric"] if self.req.series else self.req.kinds
        )
        quotas = kind_quotas(count, kinds_asked) if count else {}
        kinds = [k for k, n in quotas.items() for _ in range(n)]
        self.rng.shuffle(kinds)
        chosen = self._anomalous_positions(count)
        grid = self._grid_slots(count)
        records: list[dict[str, Any] | None] = [None] * (count + len(grid))
        metric_slots: list[MetricSlot] = list(grid)
        apm_positions: list[int] = []
        for i, kind in enumerate(kinds):
            expressed = i in chosen and self.anomaly is not None and self.anomaly.covers(self.ms[i])
            if kind == "log":
                records[i] = self._log(i, expressed)
            elif kind == "metric":
                metric_slots.append(self._metric_slot(i, expressed))
            else:
                apm_positions.append(i)
        self._fill_metrics(records, metric_slots)
        self._fill_spans(records, apm_positions, chosen)
        done = [r for r in records if r is not None]
        return Batch(done, sum(1 for r in done if r["is_anomaly"]))

    def _grid_slots(self, first: int) -> list[MetricSlot]:
        """The series grid (positions from ``first``): per step, every (service, metric) once,
        the service's hosts in turn; each value is labelled with and shaped by the first window
        whose scope it falls in, as every other metric record is."""
        series = self.req.series
        if series is None:
            return []
        assert self.req.timestamp is not None
        start_us = (self.req.timestamp - EPOCH) // timedelta(microseconds=1)
        step_us = round(series.step_seconds * 1_000_000)
        steps = series_steps(self.req.spread_seconds, series.step_seconds)
        slots: list[MetricSlot] = []
        for step in range(steps):
            us = start_us + step * step_us
            ms = us // 1000
            covering = self._covering(ms)
            index = (start_us // step_us) + step  # the same host at the same instant, any call
            for service in self.services:
                hosts = estate.BY_NAME[service].hosts
                host = hosts[index % len(hosts)]
                for metric in series_metrics(service, series.metrics):
                    window = next(
                        (w for w in covering if w.scope.has_metric(metric, service, host)), None
                    )
                    effect = window.effects[metric] if window is not None else None
                    position = first + len(slots)
                    self.us.append(us)
                    self.ms.append(ms)
                    slots.append(
                        MetricSlot(
                            position,
                            service,
                            host,
                            metric,
                            us / 1_000_000,
                            effect,
                            window,
                            self.shape,
                        )
                    )
        return slots

    def _anomalous_positions(self, count: int) -> set[int]:
        if self.anomaly is None:
            return set()
        return set(self.rng.sample(range(count), round(count * self.req.anomalous_share)))

    def _covering(self, ms: int) -> list[ActiveAnomaly]:
        return [w for w in self.windows if w.covers(ms)]

    def _base(
        self, i: int, kind: str, service: str, host: str, anomaly: ActiveAnomaly | None
    ) -> dict[str, Any]:
        flagged = anomaly is not None
        return {
            "event_id": uuid.uuid4().hex,
            "timestamp": _stamp(self.ms[i]),
            "kind": kind,
            "service": service,
            "host": host,
            "source": SOURCE,
            "anomaly_score": anomaly_score(self.rng, flagged, anomaly.intensity if anomaly else 0),
            "is_anomaly": flagged,
            "scenario_id": anomaly.scenario_id if anomaly else None,
            "anomaly_type": anomaly.archetype.anomaly_type if anomaly else None,
        }

    def _log(self, i: int, expressed: bool) -> dict[str, Any]:
        rng = self.rng
        anomaly = self.anomaly if expressed and self.anomaly and self.anomaly.log_pairs else None
        if anomaly is not None:
            name, service = self.anomalous_logs.next()
            host = self._host(service, anomaly)
        else:
            name = rng.choice(self.log_type_names)
            service = rng.choice(self.log_types[name])
            host = self._host(service, None)
            anomaly = next(
                (w for w in self._covering(self.ms[i]) if w.scope.has_log(name, service, host)),
                None,
            )
        spec = REGISTRY[name]
        account_id, account_state = self.pool.account(rng)
        ctx = Ctx(
            rng=rng,
            service=service,
            host=host,
            account_id=account_id,
            user_id=self.pool.owner(account_id, rng),
            account_state=account_state,
            **(_focus(anomaly) if anomaly is not None else {}),
        )
        level, message, attrs = build_log_attributes(spec, ctx, anomaly is not None)
        record = self._base(i, "log", service, host, anomaly)
        record.update(level=level, message=message, log_type=name, category=spec.category)
        if spec.category in TRACED_CATEGORIES:
            record["trace_id"] = f"{rng.getrandbits(128):032x}"
            record["span_id"] = f"{rng.getrandbits(64):016x}"
        record["attributes"] = attrs
        return record

    def _host(self, service: str, anomaly: ActiveAnomaly | None) -> str:
        pinned = anomaly.scope.pins.get(service) if anomaly is not None else None
        return pinned or self.rng.choice(estate.BY_NAME[service].hosts)

    def _metric_slot(self, i: int, expressed: bool) -> MetricSlot:
        rng = self.rng
        moment = self.us[i] / 1_000_000
        anomaly = self.anomaly
        if expressed and anomaly is not None and anomaly.metric_pairs:
            metric, service = self.anomalous_metrics.next()
            host = self._host(service, anomaly)
            return MetricSlot(i, service, host, metric, moment, anomaly.effects[metric], anomaly)
        service = rng.choice(self.services)
        metric = rng.choice(METRICS_BY_SERVICE[service])
        host = self._host(service, None)
        window = next(
            (w for w in self._covering(self.ms[i]) if w.scope.has_metric(metric, service, host)),
            None,
        )
        effect = window.effects[metric] if window is not None else None
        return MetricSlot(i, service, host, metric, moment, effect, window)

    def _fill_metrics(self, records: list[dict[str, Any] | None], slots: list[MetricSlot]) -> None:
        if not slots:
            return
        values = metric_values(slots, self.seed)
        for slot in slots:
            anomaly = slot.window if isinstance(slot.window, ActiveAnomaly) else None
            record = self._base(slot.position, "metric", slot.service, slot.host, anomaly)
            spec = METRICS[slot.metric]
            result = values[slot.position]
            record.update(metric_name=slot.metric, value=result.value, unit=spec.unit)
            if anomaly is not None:
                record["anomaly_score"] = metric_score(result.strength, anomaly.intensity)
            record["attributes"] = {"metric.baseline": spec.baseline, "host.name": slot.host}
            if slot.effect is not None:
                record["attributes"]["anomaly.shape"] = slot.effect.shape
            records[slot.position] = record

    def _fill_spans(
        self, records: list[dict[str, Any] | None], positions: list[int], chosen: set[int]
    ) -> None:
        queue: list[dict[str, Any]] = []
        trace_start = 0
        allowed = frozenset(self.services)
        for i in positions:
            if not queue:
                trace_start = self.ms[i]
                expressed = (
                    i in chosen
                    and self.anomaly is not None
                    and self.anomaly.covers(trace_start)
                    and bool(self.anomaly.scope.apm)
                )
                queue = self._trace(expressed, trace_start, allowed)
            span = queue.pop(0)
            offset = span.pop("offset_ms")
            label = span.pop("label")
            record = self._base(i, "apm", span.pop("service"), span.pop("host"), label)
            record["timestamp"] = _stamp(trace_start + int(offset))
            record.update(span)
            records[i] = record

    def _trace(
        self, expressed: bool, trace_start: int, allowed: frozenset[str]
    ) -> list[dict[str, Any]]:
        """One trace; each span is labelled with (and slowed by) the first window whose scope
        it falls in. A span's time is its trace's start: a trace planned before a window opened
        must not turn out to have spans inside it."""
        rng = self.rng
        effects: dict[tuple[int, str], apm.SpanEffect] = {}
        covering = self._covering(trace_start)

        def rule(service: str, host: str, _offset_ms: float) -> tuple[apm.SpanEffect, Any] | None:
            for window in covering:
                if window.scope.has_span(service, host):
                    key = (id(window), service)
                    if key not in effects:
                        effects[key] = apm.span_effect(window.archetype, service, window.intensity)
                    return effects[key], window
            return None

        if expressed and self.anomaly is not None:
            target = rng.choice(sorted(self.anomaly.scope.apm))
            everyone = frozenset(estate.SERVICE_NAMES)
            pins = self.anomaly.scope.pins
            if target in estate.BY_NAME["api-gateway"].calls:
                return apm.trace(rng, "api-gateway", everyone, rule, only_child=target, pins=pins)
            return apm.trace(rng, target, everyone, rule, pins=pins)
        # most traffic enters through the gateway; the rest starts at a service (jobs)
        usual = "api-gateway" if "api-gateway" in self.services else self.services[0]
        root = usual if rng.random() < 0.8 else rng.choice(self.services)
        return apm.trace(rng, root, allowed, rule)


def _focus(anomaly: ActiveAnomaly) -> dict[str, Any]:
    """What a log generator needs to know about the anomaly it expresses."""
    return {
        "anomaly_type": anomaly.archetype.anomaly_type,
        "intensity": anomaly.intensity,
        "focus_ip": anomaly.focus_ip,
        "focus_account": anomaly.focus_account,
        "focus_user": anomaly.focus_user,
    }


def _stamp(ms: int) -> str:
    # Every record of a batch needs one; formatting a datetime each time was one of the
    # service's largest costs. A batch spans few seconds, so each second is formatted once.
    second, milli = divmod(ms, 1000)
    return f"{_second_prefix(second)}{milli:03d}Z"


@lru_cache(maxsize=256)
def _second_prefix(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a whole second since the epoch."""
    return format_timestamp(EPOCH + timedelta(seconds=second)).removesuffix("000Z")


def synthesize(req: SynthesizeRequest, pool: EntityPool, now: float | None = None) -> Batch:
    """Make the records a request asks for (no forwarding; see ``synthesizer.Synthesizer``)."""
    return RecordMaker(req, pool, time.time() if now is None else now).make()

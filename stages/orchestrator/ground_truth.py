"""Ground truth: the anomaly windows the orchestrator opened, in memory and as JSONL.

``ground_truth.jsonl`` under the data directory gets one line when a window opens
(``"event": "opened"``, ``end`` null) and one when it closes (``"event": "closed"``, with
``end``), so an evaluation can join it with the lake even after a crash mid-window: the last line
per ``id`` is the window's final state.

A window's ``scope`` says which records belong to it (``WindowScope.contains``): a record whose
timestamp is in [start, end) and that is
- a log of one of ``scope.logs``' types from one of that type's services,
- a metric of one of ``scope.metrics`` from one of that metric's services, or
- a span of a trace that started in the window and has a span from a ``scope.apm`` service,
and, when ``scope.hosts`` is not empty, a record of a service running one of those hosts comes
from one of them. Every synthesis call carries every window overlapping its time range, and
synthesis labels each record in a window's scope with it, so labels and windows agree both ways.

Records are planned ahead of the clock (a tick's timestamps run up to the next tick). So that no
record already planned falls in a window it did not know about, a window never starts before the
planning horizon (``plan``), and never ends before it either.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stages.common.records import format_timestamp
from stages.orchestrator import metrics
from stages.orchestrator.errors import TooManyOpenWindows
from stages.orchestrator.scenario_catalogue import Scenario

# Windows kept in memory for the API; older closed windows stay in the JSONL file.
MAX_WINDOWS_IN_MEMORY = 10_000
# Every synthesis call carries the windows open meanwhile; this keeps that list bounded.
MAX_OPEN_WINDOWS = 64
EARLIEST = datetime.min.replace(tzinfo=UTC)
_INSTANT_SHAPES = {"step", "dropout", "variance_change", "exponential_decay", "poisson_bursts"}


def whole_ms(moment: datetime) -> datetime:
    """``moment`` rounded up to a whole millisecond. Window bounds are whole milliseconds, as
    record timestamps are, so a record planned before a bound is stamped before it too."""
    extra = moment.microsecond % 1000
    return moment + timedelta(microseconds=1000 - extra) if extra else moment


def ramp_seconds(shape: str, duration_seconds: float) -> float:
    """How long the leading signal takes to reach its peak inside the window."""
    if shape in _INSTANT_SHAPES:
        return 0.0
    if shape in ("gaussian_spike", "oscillation"):
        return round(duration_seconds / 2, 3)
    return round(float(duration_seconds), 3)  # ramp, sawtooth: they climb all window long


@dataclass(frozen=True)
class WindowScope:
    """Which records a window covers besides its time range (see the module docstring)."""

    logs: tuple[tuple[str, tuple[str, ...]], ...]  # (log type, its services)
    metrics: tuple[tuple[str, tuple[str, ...]], ...]  # (metric, its services)
    apm: tuple[str, ...]
    hosts: tuple[str, ...] = ()

    def services(self) -> tuple[str, ...]:
        """Every service named, the primary (the spans' and metrics') first."""
        groups = (self.apm, *(s for _, s in self.metrics), *(s for _, s in self.logs))
        return tuple(dict.fromkeys(s for group in groups for s in group))

    def to_json(self) -> dict[str, Any]:
        return {
            "logs": {name: list(services) for name, services in self.logs},
            "metrics": {name: list(services) for name, services in self.metrics},
            "apm": list(self.apm),
            "hosts": list(self.hosts),
        }


def scope_for(scenario: Scenario, emitters: Mapping[str, tuple[str, ...]]) -> WindowScope:
    """A scenario's scope: each log type from the target services that emit it (from its first
    emitter when none does), metrics and spans from the primary service, and the target host
    for host scenarios. ``emitters`` (log type -> services) comes from Log Synthesis; a type it
    does not list is scoped to the target services."""
    target = scenario.target
    logs = []
    for name in scenario.log_type_names:
        emitted_by = emitters.get(name)
        if emitted_by is None:
            logs.append((name, target.services))
            continue
        from_targets = tuple(s for s in target.services if s in emitted_by)
        logs.append((name, from_targets or emitted_by[:1]))
    primary = (target.primary_service,)
    return WindowScope(
        logs=tuple(logs),
        metrics=tuple((metric, primary) for metric in scenario.metric_names),
        apm=primary,
        hosts=(target.name,) if target.kind == "host" else (),
    )


@dataclass(frozen=True)
class Window:
    id: str
    scenario_id: str
    anomaly_type: str
    services: tuple[str, ...]
    metrics: tuple[str, ...]
    target_entity: str | None
    start: datetime
    planned_end: datetime
    end: datetime | None
    intensity: float
    ramp_seconds: float
    source: str  # execution:<id> | continuous | trigger
    scope: WindowScope
    log_types: tuple[str, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.end is None

    @property
    def last_end(self) -> datetime:
        """The end, or the planned end while open."""
        return self.end or self.planned_end

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.last_end

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["services"] = list(self.services)
        body["metrics"] = list(self.metrics)
        body["log_types"] = list(self.log_types)
        body["scope"] = self.scope.to_json()
        body["start"] = format_timestamp(self.start)
        body["planned_end"] = format_timestamp(self.planned_end)
        body["end"] = format_timestamp(self.end) if self.end else None
        return body


class GroundTruth:
    """Thread-safe register of windows; every open and close is appended to the JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._windows: dict[str, Window] = {}
        # the latest timestamp of any record planned so far (see ``plan``)
        self._horizon: datetime | None = None

    def plan(self, start: datetime, end: datetime) -> list[Window]:
        """Reserve [start, end) for records about to be made: returns every window overlapping
        it (open or closed), and no window opened later starts before ``end``."""
        with self._lock:
            if self._horizon is None or end > self._horizon:
                self._horizon = end
            windows = [w for w in self._windows.values() if w.overlaps(start, end)]
        return sorted(windows, key=lambda w: w.start)

    def ensure_capacity(self) -> None:
        if len(self.active()) >= MAX_OPEN_WINDOWS:
            raise TooManyOpenWindows(MAX_OPEN_WINDOWS)

    def open_window(
        self,
        scenario: Scenario,
        *,
        intensity: float,
        duration_seconds: float,
        source: str,
        scope: WindowScope,
        target_entity: str | None = None,
        start: datetime | None = None,
    ) -> Window:
        """Open a window at ``start`` (default now), or at the planning horizon if later."""
        with self._lock:
            if sum(1 for w in self._windows.values() if w.is_open) >= MAX_OPEN_WINDOWS:
                raise TooManyOpenWindows(MAX_OPEN_WINDOWS)
            start = whole_ms(max(start or datetime.now(UTC), self._horizon or EARLIEST))
            window = Window(
                id=uuid.uuid4().hex,
                scenario_id=scenario.id,
                anomaly_type=scenario.anomaly_type,
                services=scope.services(),
                metrics=scenario.metric_names,
                target_entity=target_entity
                or (None if scenario.target.kind in ("account", "user") else scenario.target.name),
                start=start,
                planned_end=whole_ms(start + timedelta(seconds=duration_seconds)),
                end=None,
                intensity=intensity,
                ramp_seconds=ramp_seconds(scenario.signals[0].shape, duration_seconds),
                source=source,
                scope=scope,
                log_types=scenario.log_type_names,
            )
            self._windows[window.id] = window
            self._forget_oldest_closed()
            self._append("opened", window)
        metrics.WINDOWS.labels("opened").inc()
        return window

    def record_window(
        self,
        scenario: Scenario,
        *,
        start: datetime,
        end: datetime,
        intensity: float,
        source: str,
        scope: WindowScope,
    ) -> Window:
        """Record a window whose whole range is known (history): its opened and closed lines
        are written at once. Its records are made by whoever records it, after this call, so
        the planning horizon of live records does not apply."""
        start, end = whole_ms(start), whole_ms(end)
        window = Window(
            id=uuid.uuid4().hex,
            scenario_id=scenario.id,
            anomaly_type=scenario.anomaly_type,
            services=scope.services(),
            metrics=scenario.metric_names,
            target_entity=None
            if scenario.target.kind in ("account", "user")
            else scenario.target.name,
            start=start,
            planned_end=end,
            end=end,
            intensity=intensity,
            ramp_seconds=ramp_seconds(scenario.signals[0].shape, (end - start).total_seconds()),
            source=source,
            scope=scope,
            log_types=scenario.log_type_names,
        )
        with self._lock:
            self._windows[window.id] = window
            self._forget_oldest_closed()
            self._append("opened", replace(window, end=None))
            self._append("closed", window)
        metrics.WINDOWS.labels("opened").inc()
        metrics.WINDOWS.labels("closed").inc()
        return window

    def close_window(self, window_id: str, at: datetime | None = None) -> Window | None:
        """Close an open window at ``at``, or at the planning horizon if later (records up to
        it may carry the window already), never later than planned; None if already closed."""
        with self._lock:
            window = self._windows.get(window_id)
            if window is None or not window.is_open:
                return None
            end = at or datetime.now(UTC)
            if self._horizon is not None:
                end = max(end, self._horizon)
            end = min(whole_ms(end), window.planned_end)
            closed = replace(window, end=max(end, window.start))
            self._windows[window_id] = closed
            self._append("closed", closed)
        metrics.WINDOWS.labels("closed").inc()
        return closed

    def close_expired(self, now: datetime | None = None) -> list[Window]:
        now = now or datetime.now(UTC)
        expired = [w.id for w in self.active() if w.planned_end <= now]
        return [w for w in (self.close_window(i, now) for i in expired) if w is not None]

    def active(self) -> list[Window]:
        with self._lock:
            return [w for w in self._windows.values() if w.is_open]

    def get(self, window_id: str) -> Window | None:
        with self._lock:
            return self._windows.get(window_id)

    def list(self, *, only_open: bool | None = None) -> list[Window]:
        with self._lock:
            windows = list(self._windows.values())
        if only_open is not None:
            windows = [w for w in windows if w.is_open == only_open]
        return sorted(windows, key=lambda w: w.start)

    def _append(self, event: str, window: Window) -> None:
        # Under the lock: lines from concurrent opens/closes never interleave.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, **window.to_json()}, separators=(",", ":"))
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def _forget_oldest_closed(self) -> None:
        while len(self._windows) > MAX_WINDOWS_IN_MEMORY:
            oldest = min(
                (w for w in self._windows.values() if not w.is_open),
                key=lambda w: w.start,
                default=None,
            )
            if oldest is None:
                return
            del self._windows[oldest.id]

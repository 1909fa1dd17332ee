"""Ground truth: the anomaly windows the orchestrator opened, in memory and as JSONL.

``ground_truth.jsonl`` under the data directory gets one line when a window opens
(``"event": "opened"``, ``end`` null) and one when it closes (``"event": "closed"``, with
``end``), so an evaluation can join it with the lake even after a crash mid-window: the last line
per ``id`` is the window's final state. A record is anomalous for a window when its timestamp is
inside [start, end) and its service is one of the window's services (``label_for``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stages.common.records import format_timestamp
from stages.orchestrator import metrics
from stages.orchestrator.catalogue import Scenario

# Windows kept in memory for the API; older closed windows stay in the JSONL file.
MAX_WINDOWS_IN_MEMORY = 10_000
_INSTANT_SHAPES = {"step", "dropout", "variance_change", "exponential_decay", "poisson_bursts"}


def ramp_seconds(shape: str, duration_seconds: float) -> float:
    """How long the leading signal takes to reach its peak inside the window."""
    if shape in _INSTANT_SHAPES:
        return 0.0
    if shape in ("gaussian_spike", "oscillation"):
        return round(duration_seconds / 2, 3)
    return round(float(duration_seconds), 3)  # ramp, sawtooth: they climb all window long


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

    @property
    def is_open(self) -> bool:
        return self.end is None

    def covers(self, moment: datetime, service: str) -> bool:
        end = self.end or self.planned_end
        return self.start <= moment < end and service in self.services

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["services"] = list(self.services)
        body["metrics"] = list(self.metrics)
        body["start"] = format_timestamp(self.start)
        body["planned_end"] = format_timestamp(self.planned_end)
        body["end"] = format_timestamp(self.end) if self.end else None
        return body


def label_for(windows: Iterable[Window], timestamp: str, service: str) -> Window | None:
    """The window a record at ``timestamp`` from ``service`` belongs to, if any."""
    moment = datetime.fromisoformat(timestamp)
    for window in windows:
        if window.covers(moment, service):
            return window
    return None


class GroundTruth:
    """Thread-safe register of windows; every open and close is appended to the JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._windows: dict[str, Window] = {}

    def open_window(
        self,
        scenario: Scenario,
        *,
        intensity: float,
        duration_seconds: float,
        source: str,
        target_entity: str | None = None,
        start: datetime | None = None,
        services: tuple[str, ...] | None = None,
    ) -> Window:
        start = start or datetime.now(UTC)
        window = Window(
            id=uuid.uuid4().hex,
            scenario_id=scenario.id,
            anomaly_type=scenario.anomaly_type,
            services=services or scenario.target.services,
            metrics=scenario.metric_names,
            target_entity=target_entity
            or (None if scenario.target.kind in ("account", "user") else scenario.target.name),
            start=start,
            planned_end=start + timedelta(seconds=duration_seconds),
            end=None,
            intensity=intensity,
            ramp_seconds=ramp_seconds(scenario.signals[0].shape, duration_seconds),
            source=source,
        )
        with self._lock:
            self._windows[window.id] = window
            self._forget_oldest_closed()
            self._append("opened", window)
        metrics.WINDOWS.labels("opened").inc()
        return window

    def close_window(self, window_id: str, at: datetime | None = None) -> Window | None:
        """Close an open window at ``at`` (never later than planned); None if already closed."""
        with self._lock:
            window = self._windows.get(window_id)
            if window is None or not window.is_open:
                return None
            end = min(at or datetime.now(UTC), window.planned_end)
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

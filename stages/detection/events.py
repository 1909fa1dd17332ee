"""Per-point decisions -> anomaly events, with hysteresis: one incident is one event.

An event opens on the ``open_after``-th consecutive anomalous point (its start is the first point
of that run) and closes on the ``close_after``-th consecutive normal point after it (its end is
the last anomalous point). Normal points in between that are fewer than ``close_after`` do not
split the incident; an anomalous run shorter than ``open_after`` opens nothing. An event carries
its peak score and when it happened, the detectors that voted on any of its points, the count of
anomalous points, the signals involved and a severity from the peak score (``SEVERITIES``).
``update`` returns what changed: ``open``, ``update`` (the severity rose) and ``close``, each
with a copy of the event, which is what an alert is made from. Pure and deterministic;
``state()``/``from_state()`` carry an open event across a restart, so it is neither lost nor
opened twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Self

from stages.detection.decision import Decision

# (lowest peak score, severity), highest first.
SEVERITIES: tuple[tuple[float, str], ...] = (
    (0.9, "critical"),
    (0.75, "high"),
    (0.6, "medium"),
    (0.0, "low"),
)
_RANK = {name: rank for rank, (_, name) in enumerate(reversed(SEVERITIES))}


def severity(peak_score: float) -> str:
    for lowest, name in SEVERITIES:
        if peak_score >= lowest:
            return name
    return SEVERITIES[-1][1]


@dataclass(slots=True)
class AnomalyEvent:
    series: str
    start: float
    end: float
    peak_score: float
    peak_at: float
    voters: tuple[str, ...]
    points: int
    signals: tuple[str, ...] = ()
    state: Literal["pending", "open", "closed"] = "pending"

    @property
    def severity(self) -> str:
        return severity(self.peak_score)

    @property
    def event_id(self) -> str:
        """The same incident always gets the same id (series and start in milliseconds)."""
        return f"{self.series}@{round(self.start * 1000)}"

    def add(self, timestamp: float, decision: Decision, signals: tuple[str, ...]) -> None:
        self.end = timestamp
        self.points += 1
        if decision.score > self.peak_score:
            self.peak_score = decision.score
            self.peak_at = timestamp
        self.voters = tuple(sorted(set(self.voters).union(decision.voters)))
        self.signals = tuple(sorted(set(self.signals).union(signals)))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.event_id, "severity": self.severity}


@dataclass(frozen=True, slots=True)
class EventChange:
    action: Literal["open", "update", "close"]
    event: AnomalyEvent


@dataclass(slots=True)
class EventTracker:
    series: str
    open_after: int = 2
    close_after: int = 12
    current: AnomalyEvent | None = None
    normal_run: int = 0

    def __post_init__(self) -> None:
        if self.open_after < 1 or self.close_after < 1:
            raise ValueError("open_after and close_after must be at least 1")

    def update(
        self, timestamp: float, decision: Decision, signals: tuple[str, ...] = ()
    ) -> list[EventChange]:
        """Feed one point's decision (``signals``: the signals that made it anomalous)."""
        changes: list[EventChange] = []
        event = self.current
        if decision.anomalous:
            self.normal_run = 0
            if event is None:
                event = self.current = AnomalyEvent(
                    self.series, timestamp, timestamp, decision.score, timestamp, (), 0
                )
            before = event.severity
            event.add(timestamp, decision, signals)
            if event.state == "pending" and event.points >= self.open_after:
                event.state = "open"
                changes.append(EventChange("open", replace(event)))
            elif event.state == "open" and _RANK[event.severity] > _RANK[before]:
                changes.append(EventChange("update", replace(event)))
        elif event is not None:
            if event.state == "pending":
                self.current = None  # too short a run: not an incident
            else:
                self.normal_run += 1
                if self.normal_run >= self.close_after:
                    event.state = "closed"
                    changes.append(EventChange("close", replace(event)))
                    self.current = None
                    self.normal_run = 0
        return changes

    @property
    def open_event(self) -> AnomalyEvent | None:
        event = self.current
        return replace(event) if event is not None and event.state == "open" else None

    def state(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "open_after": self.open_after,
            "close_after": self.close_after,
            "normal_run": self.normal_run,
            "current": asdict(self.current) if self.current is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        current = state["current"]
        if current is not None:
            current = AnomalyEvent(
                **{
                    **current,
                    "voters": tuple(current["voters"]),
                    "signals": tuple(current["signals"]),
                }
            )
        return cls(
            series=state["series"],
            open_after=int(state["open_after"]),
            close_after=int(state["close_after"]),
            current=current,
            normal_run=int(state["normal_run"]),
        )

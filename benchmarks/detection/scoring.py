"""Detection over the history and the join of its events with the ground-truth windows.

``detect`` runs what the detection service runs: per service a ``ServiceEnsemble`` built from the
service's ``Configuration`` (DETECTION_SERIES, DETECTION_RULES, DETECTION_VOTING,
DETECTION_OPEN_AFTER, DETECTION_CLOSE_AFTER and their defaults), fed the points
``FeatureReader.pivot`` makes of the features rows, in bucket order. From the same pass, each
detector alone: a point is anomalous for it when its score of some series reaches 0.5 (its own
threshold), with an ``EventTracker`` of the same hysteresis.

``score`` joins events with windows:
- an event *matches* a window when it is on one of the window's services and its span
  [start, end] meets [window start, window end + ``GRACE_SECONDS``];
- an event of the test days that matches no window is a false positive; precision is matched
  events over events of the test days; recall is detected windows over windows;
- time to detect of a window: the end of the bucket at which the first matching event opened
  (the moment the event exists: ``open_after`` anomalous buckets), minus the window's start,
  0 when an event was already open;
- false alarms per service per day: events starting on the normal-only days, over services x
  those days.

Observability is derived from the data, never from a detector: a window is *observable* when
its scope names something the series read (a metric among DETECTION_SERIES' metrics on a
service of its scope; spans or logs of a service of its scope when a series reads ``apm`` or
``log`` rows) and at least ``MIN_OUTLYING_BUCKETS`` of its buckets have a value of one of those
series outside the range the same series took on the same service in the learning days at the
same hour of day (``NORMAL_QUANTILES``, widened by ``RANGE_MARGIN`` of its width). An anomaly type
is invisible when none of its windows is observable; its windows are reported apart and left out
of the targets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from benchmarks.detection.history import History
from stages.detection.decision import Decision
from stages.detection.ensemble import ServiceEnsemble
from stages.detection.events import EventTracker
from stages.detection.reader import FeatureReader, Point, SeriesSpec
from stages.detection.worker import Configuration
from stages.orchestrator.ground_truth import Window

GRACE_SECONDS = 120.0
MIN_OUTLYING_BUCKETS = 2
NORMAL_QUANTILES = (0.001, 0.999)
RANGE_MARGIN = 0.1
HOUR = 3600.0
ALL_HOURS = -1
ENSEMBLE = "ensemble"

TARGETS = {
    "recall": 0.90,
    "precision": 0.90,
    "ttd_p50_s": 60.0,
    "false_alarms_per_service_day": 1.0,
}


@dataclass
class Event:
    service: str
    start: float
    end: float
    opened_at: float  # end of the bucket at which the event opened
    signals: tuple[str, ...] = ()
    voters: tuple[str, ...] = ()
    peak_score: float = 0.0


@dataclass
class Detection:
    """Events per detector name (``ENSEMBLE`` for the ensemble), every service together."""

    events: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    points: int = 0
    services: tuple[str, ...] = ()


def points_of(history: History, specs: Sequence[SeriesSpec]) -> dict[str, list[Point]]:
    reader = FeatureReader(None, tuple(specs))  # type: ignore[arg-type]  # pivot needs no catalog
    return reader.pivot(history.features, {})


class _Tracked:
    """One tracker and the events it opened, for one (detector, service)."""

    def __init__(self, service: str, open_after: int, close_after: int, width: float) -> None:
        self.service = service
        self.tracker = EventTracker(service, open_after, close_after)
        self.width = width
        self.events: list[Event] = []
        self.opened: Event | None = None

    def feed(self, timestamp: float, decision: Decision, signals: tuple[str, ...]) -> None:
        for change in self.tracker.update(timestamp, decision, signals):
            event = change.event
            if change.action == "open":
                self.opened = Event(self.service, event.start, event.end, timestamp + self.width)
                self.events.append(self.opened)
            if self.opened is not None:
                self.opened.end = event.end
                self.opened.signals = event.signals
                self.opened.voters = event.voters
                self.opened.peak_score = event.peak_score
            if change.action == "close":
                self.opened = None

    def finish(self) -> list[Event]:
        """Events still open at the end of the history end at their last anomalous bucket."""
        current = self.tracker.current
        if self.opened is not None and current is not None:
            self.opened.end = current.end
            self.opened.signals = current.signals
            self.opened.voters = current.voters
            self.opened.peak_score = current.peak_score
        return self.events


def detect_service(
    service: str, points: list[Point], config: Configuration, width: float, seed: int = 42
) -> tuple[dict[str, list[Event]], int]:
    """The events of one service, per detector name (``ENSEMBLE`` for the ensemble), and the
    points scored."""
    ensemble = ServiceEnsemble(
        service,
        [s.series for s in config.series],
        engine=config.engine,
        rules=config.rules,
        open_after=config.open_after,
        close_after=config.close_after,
        seed=seed,
    )
    trackers: dict[str, _Tracked] = {}
    tracked = _Tracked(service, config.open_after, config.close_after, width)
    scored = 0
    for point in points:
        outcome = ensemble.update_known(point.timestamp, point.values)
        if outcome is None:
            continue
        scored += 1
        anomalous = tuple(s for s, r in outcome.signals.items() if r.decision.anomalous)
        tracked.feed(point.timestamp, outcome.decision, anomalous)
        alone: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for signal, r in outcome.signals.items():
            for detector, value in r.scores.items():
                alone[detector].append((signal, value))
        for detector, pairs in alone.items():
            if detector not in trackers:
                trackers[detector] = _Tracked(service, config.open_after, config.close_after, width)
            voting = tuple(sorted(s for s, v in pairs if v >= 0.5))
            best = max(v for _, v in pairs)
            decision = Decision(bool(voting), best, 1.0 if voting else 0.0, (detector,))
            trackers[detector].feed(point.timestamp, decision, voting)
    events = {ENSEMBLE: tracked.finish()}
    for detector, t in trackers.items():
        events[detector] = t.finish()
    return events, scored


def _detect_one(args: tuple[str, list[Point], Configuration, float, int]) -> Any:
    return detect_service(*args)


def detect(
    points: Mapping[str, list[Point]],
    config: Configuration,
    width: float,
    seed: int = 42,
    jobs: int = 1,
) -> Detection:
    """Every service, ``jobs`` at a time in worker processes (each service's ensemble is
    independent of the others, so the result does not depend on ``jobs``)."""
    services = sorted(points)
    work = [(service, points[service], config, width, seed) for service in services]
    if jobs > 1 and len(services) > 1:
        with ProcessPoolExecutor(min(jobs, len(services))) as pool:
            outcomes = list(pool.map(_detect_one, work))
    else:
        outcomes = [_detect_one(item) for item in work]
    result = Detection(services=tuple(services))
    for events, scored in outcomes:
        result.points += scored
        for detector, found in events.items():
            result.events[detector].extend(found)
    return result


# --- observability --------------------------------------------------------------------------------


def read_by_window(window: Window, specs: Sequence[SeriesSpec]) -> dict[str, tuple[str, ...]]:
    """Series -> the window's services on which that series reads records of the window's scope."""
    scope = window.scope
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        if spec.signal == "metric":
            services = tuple(s for name, group in scope.metrics if name == spec.name for s in group)
        elif spec.signal == "apm":
            services = tuple(scope.apm)
        else:
            services = tuple(dict.fromkeys(s for _, group in scope.logs for s in group))
        if services:
            out[spec.series] = services
    return out


def _normal_ranges(
    points: Mapping[str, list[Point]], learn_end: float
) -> dict[tuple[str, str, int], tuple[float, float]]:
    """(service, series, hour of day) -> the normal range of the learning days; hour
    ``ALL_HOURS``: of the whole learning range."""
    values: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for service, series_points in points.items():
        for point in series_points:
            if point.timestamp >= learn_end:
                break
            hour = int(point.timestamp % 86_400 // HOUR)
            for series, value in point.values.items():
                values[(service, series, hour)].append(value)
    whole: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for (service, series, _), vs in values.items():
        whole[(service, series, ALL_HOURS)].extend(vs)
    ranges = {}
    for key, vs in (values | whole).items():
        low, high = np.quantile(np.asarray(vs), NORMAL_QUANTILES)
        margin = (high - low) * RANGE_MARGIN
        ranges[key] = (float(low - margin), float(high + margin))
    return ranges


@dataclass
class Observation:
    observable: bool
    reason: str
    outlying: dict[str, int]  # "service/series" -> buckets outside the normal range


def observe(
    windows: Sequence[Window],
    points: Mapping[str, list[Point]],
    specs: Sequence[SeriesSpec],
    learn_end: float,
) -> dict[str, Observation]:
    ranges = _normal_ranges(points, learn_end)
    by_time = {service: ([p.timestamp for p in pts], pts) for service, pts in points.items()}
    out: dict[str, Observation] = {}
    for window in windows:
        read = read_by_window(window, specs)
        if not read:
            scope = window.scope
            out[window.id] = Observation(
                False,
                "its scope (metrics: "
                + (", ".join(name for name, _ in scope.metrics) or "none")
                + ") has no metric, span or log series that DETECTION_SERIES reads",
                {},
            )
            continue
        start, end = window.start.timestamp(), window.last_end.timestamp()
        outlying: dict[str, int] = {}
        valued: set[str] = set()
        for series, services in read.items():
            for service in services:
                if service not in by_time:
                    continue
                times, pts = by_time[service]
                lo = np.searchsorted(times, start)
                hi = np.searchsorted(times, end)
                count = 0
                for point in pts[lo:hi]:
                    value = point.values.get(series)
                    if value is not None:
                        valued.add(series)
                    hour = int(point.timestamp % 86_400 // HOUR)
                    # Learning shorter than a day (--quick): the whole learning range.
                    bounds = ranges.get((service, series, hour)) or ranges.get(
                        (service, series, ALL_HOURS)
                    )
                    if value is None or bounds is None:
                        continue
                    if not bounds[0] <= value <= bounds[1]:
                        count += 1
                if count:
                    outlying[f"{service}/{series}"] = count
        if max(outlying.values(), default=0) >= MIN_OUTLYING_BUCKETS:
            out[window.id] = Observation(True, "", outlying)
        elif not valued:
            names = ", ".join(f"{s} on {', '.join(v)}" for s, v in sorted(read.items()))
            out[window.id] = Observation(
                False,
                f"the series its scope names ({names}) have no value in its window: its "
                "services do not report those metrics",
                outlying,
            )
        else:
            names = ", ".join(f"{s} on {', '.join(v)}" for s, v in sorted(read.items()))
            out[window.id] = Observation(
                False,
                f"its records leave every series it touches ({names}) within the range of the "
                f"learning days at the same hour (fewer than {MIN_OUTLYING_BUCKETS} buckets "
                "outside)",
                outlying,
            )
    return out


# --- the join -------------------------------------------------------------------------------------


def _matches(event: Event, window: Window) -> bool:
    if event.service not in window.services:
        return False
    start, end = window.start.timestamp(), window.last_end.timestamp() + GRACE_SECONDS
    return event.start <= end and event.end >= start


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return round(ordered[min(rank, len(ordered)) - 1], 1)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return round(2 * p * r / (p + r), 4) if p + r > 0 else 0.0


@dataclass
class Join:
    windows: int
    detected: int
    events: int
    matched_events: int
    false_alarms: int  # events on the normal-only days
    ttd: list[float]
    per_window: dict[str, float | None]  # window id -> time to detect, None if missed
    fp_events: list[Event]

    def precision(self) -> float | None:
        return _ratio(self.matched_events, self.events)

    def recall(self) -> float | None:
        return _ratio(self.detected, self.windows)


def join(
    events: Iterable[Event],
    windows: Sequence[Window],
    counted: Sequence[Window],
    test_range: tuple[float, float],
    normal_range: tuple[float, float],
) -> Join:
    """``windows``: every window (an event on any of them is no false positive); ``counted``:
    those recall and time to detect are computed over."""
    test_events, normal_events = [], []
    for event in events:
        if test_range[0] <= event.start < test_range[1] or (
            event.start < test_range[0] <= event.end
        ):
            test_events.append(event)
        elif normal_range[0] <= event.start < normal_range[1]:
            normal_events.append(event)
    matched = [e for e in test_events if any(_matches(e, w) for w in windows)]
    fps = [e for e in test_events if not any(_matches(e, w) for w in windows)]
    per_window: dict[str, float | None] = {}
    ttd: list[float] = []
    for window in counted:
        hits = [e for e in test_events if _matches(e, window)]
        if not hits:
            per_window[window.id] = None
            continue
        first = min(e.opened_at for e in hits)
        delay = max(0.0, first - window.start.timestamp())
        per_window[window.id] = delay
        ttd.append(delay)
    return Join(
        windows=len(counted),
        detected=len(ttd),
        events=len(test_events),
        matched_events=len(matched),
        false_alarms=len(normal_events),
        ttd=ttd,
        per_window=per_window,
        fp_events=fps,
    )


def _nearest_type(event: Event, windows: Sequence[Window]) -> str | None:
    near = [w for w in windows if event.service in w.services]
    if not near:
        return None
    best = min(near, key=lambda w: abs(w.start.timestamp() - event.start))
    return best.anomaly_type


def scoreboard(
    history: History,
    detection: Detection,
    observations: Mapping[str, Observation],
    generated_at: datetime,
) -> dict[str, Any]:
    layout = history.layout
    windows = history.windows
    test_range = (layout.test_start.timestamp(), layout.normal_start.timestamp())
    normal_range = (layout.normal_start.timestamp(), layout.end.timestamp())
    by_type: dict[str, list[Window]] = defaultdict(list)
    for w in windows:
        by_type[w.anomaly_type].append(w)
    observable_types = {
        t for t, ws in by_type.items() if any(observations[w.id].observable for w in ws)
    }
    counted = [w for w in windows if w.anomaly_type in observable_types]
    services = max(1, len(detection.services))
    normal_days = max(layout.normal_days, 1e-9)

    def summary(events: list[Event]) -> tuple[Join, dict[str, Any]]:
        j = join(events, windows, counted, test_range, normal_range)
        precision, recall = j.precision(), j.recall()
        return j, {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "ttd_p50_s": _quantile(j.ttd, 0.5),
            "ttd_p90_s": _quantile(j.ttd, 0.9),
            "false_alarms_per_service_day": round(j.false_alarms / services / normal_days, 3),
            "windows": j.windows,
            "detected": j.detected,
            "events": j.events,
            "false_positives": j.events - j.matched_events,
            "false_alarms": j.false_alarms,
        }

    ensemble_join, overall = summary(detection.events[ENSEMBLE])
    fp_types: dict[str | None, int] = defaultdict(int)
    for event in ensemble_join.fp_events:
        fp_types[_nearest_type(event, windows)] += 1
    per_type = []
    for anomaly_type in sorted(by_type):
        ws = by_type[anomaly_type]
        ttds = [ensemble_join.per_window.get(w.id) for w in ws]
        found = [t for t in ttds if t is not None]
        matched = sum(
            1
            for e in detection.events[ENSEMBLE]
            if test_range[0] <= e.opened_at < test_range[1] + GRACE_SECONDS
            and any(_matches(e, w) for w in ws)
        )
        observable = anomaly_type in observable_types
        if not observable:
            found = [0.0 for w in ws if any(_matches(e, w) for e in detection.events[ENSEMBLE])]
        per_type.append(
            {
                "anomaly_type": anomaly_type,
                "observable": observable,
                "windows": len(ws),
                "detected": len(found),
                "recall": _ratio(len(found), len(ws)),
                "precision": _ratio(matched, matched + fp_types.get(anomaly_type, 0)),
                "ttd_p50_s": _quantile(found, 0.5) if observable else None,
            }
        )
    per_detector = []
    for detector in sorted(detection.events):
        _, figures = summary(detection.events[detector])
        per_detector.append(
            {
                "detector": detector,
                "precision": figures["precision"],
                "recall": figures["recall"],
                "f1": figures["f1"],
                "ttd_p50_s": figures["ttd_p50_s"],
                "false_alarms_per_service_day": figures["false_alarms_per_service_day"],
                "events": figures["events"],
            }
        )
    invisible = []
    for anomaly_type in sorted(set(by_type) - observable_types):
        reasons = sorted({observations[w.id].reason for w in by_type[anomaly_type]})
        invisible.append({"anomaly_type": anomaly_type, "reason": "; ".join(reasons)})
    met = (
        overall["recall"] is not None
        and overall["recall"] >= TARGETS["recall"]
        and overall["precision"] is not None
        and overall["precision"] >= TARGETS["precision"]
        and overall["ttd_p50_s"] is not None
        and overall["ttd_p50_s"] <= TARGETS["ttd_p50_s"]
        and overall["false_alarms_per_service_day"] <= TARGETS["false_alarms_per_service_day"]
    )
    window_rows = []
    for w in windows:
        delay = ensemble_join.per_window.get(w.id)
        window_rows.append(
            {
                "anomaly_type": w.anomaly_type,
                "scenario_id": w.scenario_id,
                "services": list(w.services),
                "start": w.start.isoformat(),
                "end": w.last_end.isoformat(),
                "intensity": w.intensity,
                "observable": observations[w.id].observable,
                "outlying_buckets": observations[w.id].outlying,
                "detected": delay is not None,
                "ttd_s": delay,
            }
        )
    return {
        "seed": history.seed,
        "generated_at": generated_at.isoformat(),
        "days": {
            "learn": layout.learn_days,
            "test": layout.test_days,
            "normal_only": layout.normal_days,
            "start": layout.start.isoformat(),
            "resolution_seconds": layout.resolution_seconds,
        },
        "targets": dict(TARGETS),
        "met": met,
        "overall": overall,
        "per_type": per_type,
        "per_detector": per_detector,
        "invisible": invisible,
        "windows": window_rows,
        "services": list(detection.services),
        "history": {
            "records": history.records,
            "quarantined": history.quarantined,
            "synthesis_calls": history.synthesis_calls,
            "grid_metrics": list(history.metrics),
            "feature_rows": history.features.num_rows,
            "points_scored": detection.points,
        },
        "grace_seconds": GRACE_SECONDS,
    }

"""The ensemble: the detectors of a series, the decision engine and the event tracker, wired.

``SeriesScorer`` runs the default univariate detectors of one signal (``DEFAULT_DETECTORS``,
plus a ``RuleDetector`` when rules name the signal). ``SeriesEnsemble`` scores one series point
by point, decides with the policy of its signal type and tracks its events: this is what
``score-csv`` runs. ``ServiceEnsemble`` does the same for all the signals of one service at once
and adds the multivariate detector across them: a signal's decision counts the multivariate
score as one more vote, and the service's event lists the signals whose points were anomalous.

Every point is scored with the past only; the state (``state()``, ``to_bytes()``) is JSON, so a
restart from it scores the following points exactly as an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import orjson

from stages.detection import detectors
from stages.detection.decision import Decision, DecisionEngine
from stages.detection.detectors import (
    IQRFences,
    RandomCutForest,
    RobustMahalanobis,
    RobustZ,
    Rule,
    RuleDetector,
    SeasonalBaseline,
    SpectralResidual,
)
from stages.detection.events import EventChange, EventTracker

DEFAULT_DETECTORS = ("robust_z", "iqr", "seasonal", "spectral_residual", "rcf")
STATE_VERSION = 1


def default_detectors(seed: int = 42) -> dict[str, Any]:
    """A fresh set of the default univariate detectors with their default parameters."""
    return {
        "robust_z": RobustZ(),
        "iqr": IQRFences(),
        "seasonal": SeasonalBaseline(),
        "spectral_residual": SpectralResidual(),
        "rcf": RandomCutForest(seed=seed),
    }


class SeriesScorer:
    """Every detector of one signal, fed the same points; scores keyed by detector name."""

    def __init__(self, signal: str, rules: Iterable[Rule] = (), seed: int = 42) -> None:
        self.signal = signal
        self.detectors: dict[str, Any] = default_detectors(seed)
        mine = RuleDetector.for_signal(rules, signal)
        if mine.rules:
            self.detectors["rules"] = mine

    def update(self, timestamp: float, value: float) -> dict[str, float]:
        return {name: d.update(timestamp, value) for name, d in self.detectors.items()}

    def state(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "detectors": {name: d.state() for name, d in self.detectors.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        scorer = cls.__new__(cls)
        scorer.signal = state["signal"]
        scorer.detectors = {
            name: detectors.from_state(saved) for name, saved in state["detectors"].items()
        }
        return scorer


@dataclass(frozen=True, slots=True)
class PointResult:
    timestamp: float
    scores: dict[str, float]
    decision: Decision
    changes: tuple[EventChange, ...]


class SeriesEnsemble:
    """One series end to end: detectors -> voting -> events."""

    def __init__(
        self,
        series: str = "series",
        signal_type: str | None = None,
        engine: DecisionEngine | None = None,
        rules: Iterable[Rule] = (),
        seed: int = 42,
        open_after: int = 2,
        close_after: int = 12,
    ) -> None:
        self.series = series
        self.signal_type = signal_type
        self.engine = engine or DecisionEngine()
        self.scorer = SeriesScorer(signal_type or series, rules, seed)
        self.tracker = EventTracker(series, open_after, close_after)

    def update(self, timestamp: float, value: float) -> PointResult:
        scores = self.scorer.update(timestamp, value)
        decision = self.engine.decide(scores, self.signal_type)
        signals = (self.series,) if decision.anomalous else ()
        changes = self.tracker.update(timestamp, decision, signals)
        return PointResult(timestamp, scores, decision, tuple(changes))

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "series": self.series,
            "signal_type": self.signal_type,
            "scorer": self.scorer.state(),
            "tracker": self.tracker.state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], engine: DecisionEngine | None = None) -> Self:
        """The configuration (``engine``) is not state: it comes from the settings of the day."""
        _check_version(state)
        ensemble = cls.__new__(cls)
        ensemble.series = state["series"]
        ensemble.signal_type = state["signal_type"]
        ensemble.engine = engine or DecisionEngine()
        ensemble.scorer = SeriesScorer.from_state(state["scorer"])
        ensemble.tracker = EventTracker.from_state(state["tracker"])
        return ensemble

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.state())

    @classmethod
    def from_bytes(cls, data: bytes, engine: DecisionEngine | None = None) -> Self:
        return cls.from_state(orjson.loads(data), engine)


@dataclass(frozen=True, slots=True)
class ServicePoint:
    timestamp: float
    signals: dict[str, PointResult]  # per signal; ``changes`` there are always empty
    multivariate: float | None  # None until every signal has a value at this timestamp
    decision: Decision  # anomalous if any signal is; score = the highest signal score
    changes: tuple[EventChange, ...]


class ServiceEnsemble:
    """All the signals of one service: per-signal detectors, the multivariate detector, events.

    ``signal_types`` maps a signal to the voting policy it uses (its own name by default).
    """

    def __init__(
        self,
        service: str,
        signals: Sequence[str],
        signal_types: Mapping[str, str] | None = None,
        engine: DecisionEngine | None = None,
        rules: Iterable[Rule] = (),
        seed: int = 42,
        open_after: int = 2,
        close_after: int = 12,
    ) -> None:
        if not signals or len(set(signals)) != len(signals):
            raise ValueError("a service needs one or more distinct signals")
        rules = tuple(rules)
        self.service = service
        self.signals = tuple(signals)
        self.signal_types = {s: (signal_types or {}).get(s, s) for s in self.signals}
        self.engine = engine or DecisionEngine()
        self.scorers = {s: SeriesScorer(s, rules, seed) for s in self.signals}
        self.multivariate = RobustMahalanobis(len(self.signals)) if len(self.signals) > 1 else None
        self.tracker = EventTracker(service, open_after, close_after)

    def update_known(self, timestamp: float, values: Mapping[str, float]) -> ServicePoint | None:
        """:meth:`update` with the values of this ensemble's series among ``values`` (a read
        point may carry series another configuration scores); None when it has none of them."""
        known = {k: v for k, v in values.items() if k in self.signals}
        return self.update(timestamp, known) if known else None

    def update(self, timestamp: float, values: Mapping[str, float]) -> ServicePoint:
        if not values:
            raise ValueError(f"no values for {self.service}")
        unknown = set(values) - set(self.signals)
        if unknown:
            raise ValueError(f"unknown signals for {self.service}: {', '.join(sorted(unknown))}")
        multivariate = None
        if self.multivariate is not None and len(values) == len(self.signals):
            multivariate = self.multivariate.update(timestamp, [values[s] for s in self.signals])
        results: dict[str, PointResult] = {}
        for signal in self.signals:
            if signal not in values:
                continue
            scores = self.scorers[signal].update(timestamp, values[signal])
            if multivariate is not None:
                scores["multivariate"] = multivariate
            decision = self.engine.decide(scores, self.signal_types[signal])
            results[signal] = PointResult(timestamp, scores, decision, ())
        anomalous = tuple(s for s, r in results.items() if r.decision.anomalous)
        voters = sorted({v for s in anomalous for v in results[s].decision.voters})
        best = max((r.decision for r in results.values()), key=lambda d: d.score, default=None)
        decision = Decision(
            anomalous=bool(anomalous),
            score=best.score if best else 0.0,
            support=best.support if best else 0.0,
            voters=tuple(voters),
        )
        changes = self.tracker.update(timestamp, decision, anomalous)
        return ServicePoint(timestamp, results, multivariate, decision, tuple(changes))

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "service": self.service,
            "signals": list(self.signals),
            "signal_types": self.signal_types,
            "scorers": {s: scorer.state() for s, scorer in self.scorers.items()},
            "multivariate": self.multivariate.state() if self.multivariate else None,
            "tracker": self.tracker.state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], engine: DecisionEngine | None = None) -> Self:
        _check_version(state)
        ensemble = cls.__new__(cls)
        ensemble.service = state["service"]
        ensemble.signals = tuple(state["signals"])
        ensemble.signal_types = dict(state["signal_types"])
        ensemble.engine = engine or DecisionEngine()
        ensemble.scorers = {s: SeriesScorer.from_state(v) for s, v in state["scorers"].items()}
        saved = state["multivariate"]
        ensemble.multivariate = RobustMahalanobis.from_state(saved) if saved else None
        ensemble.tracker = EventTracker.from_state(state["tracker"])
        return ensemble

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.state())

    @classmethod
    def from_bytes(cls, data: bytes, engine: DecisionEngine | None = None) -> Self:
        return cls.from_state(orjson.loads(data), engine)


def _check_version(state: Mapping[str, Any]) -> None:
    if state.get("version") != STATE_VERSION:
        raise ValueError(
            f"detector state version {state.get('version')!r} is not {STATE_VERSION}: "
            "it was written by another release"
        )

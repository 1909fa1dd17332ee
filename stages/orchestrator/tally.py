"""Sending planned synthesis requests and counting what came back."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from stages.orchestrator import metrics
from stages.orchestrator.clients import SynthesisClient, SynthesisOutcome, SynthesisRequest
from stages.orchestrator.pacing import RateMeter


@dataclass
class Tally:
    """Requested vs produced for one run; read by the API. A continuous run records from up to
    ``MAX_TICKS_IN_FLIGHT`` threads at once, so updates hold the lock."""

    requested: int = 0
    produced: int = 0
    failed: int = 0
    retries: int = 0
    calls: int = 0
    failed_calls: int = 0
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, outcome: SynthesisOutcome, source: str) -> None:
        with self._lock:
            self._record(outcome, source)

    def _record(self, outcome: SynthesisOutcome, source: str) -> None:
        self.calls += 1
        self.requested += outcome.requested
        self.produced += outcome.produced
        self.retries += outcome.retries
        metrics.RECORDS_REQUESTED.labels(source).inc(outcome.requested)
        metrics.RECORDS_PRODUCED.labels(source).inc(outcome.produced)
        missing = outcome.requested - outcome.produced
        if outcome.error is not None:
            self.failed_calls += 1
            self.last_error = outcome.error
        if missing > 0:
            self.failed += missing
            reason = (outcome.error or "short_answer").split(":")[0]
            metrics.RECORDS_FAILED.labels(source, reason).inc(missing)


def produce(
    client: SynthesisClient,
    requests: Iterable[SynthesisRequest],
    *,
    stop: threading.Event,
    tally: Tally,
    source: str,
    meter: RateMeter | None = None,
) -> None:
    for request in requests:
        outcome = client.synthesize(request, stop)
        tally.record(outcome, source)
        if meter is not None:
            meter.add(outcome.produced)

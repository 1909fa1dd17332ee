"""Executions: one scenario run for a fixed duration at a fixed rate, in its own thread.

The window is opened (and the state effect applied) before the thread starts; the thread asks
synthesis for ``rate`` records per second in ``TICK_SECONDS`` steps, each carrying the anomaly
context, and closes the window when the duration is over or the execution is stopped. State
effects are not reverted at the end.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stages.common.records import format_timestamp
from stages.orchestrator import metrics
from stages.orchestrator.clients import (
    StateEffectResult,
    SynthesisClient,
    SynthesisRequest,
    context_for,
    derive_seed,
    split_count,
)
from stages.orchestrator.errors import ExecutionNotFound, TooManyExecutions
from stages.orchestrator.ground_truth import GroundTruth, Window
from stages.orchestrator.pacing import Schedule
from stages.orchestrator.scenario_catalogue import Scenario
from stages.orchestrator.tally import Tally, produce

TICK_SECONDS = 0.25
MAX_RUNNING = 16
MAX_KEPT = 1_000  # finished executions kept for the API, oldest forgotten first
STOP_JOIN_SECONDS = 30.0


@dataclass(frozen=True)
class ExecutionPlan:
    duration_seconds: float
    intensity: float
    rate: float
    anomalous_share: float
    seed: int | None = None


@dataclass
class Execution:
    id: str
    scenario: Scenario
    plan: ExecutionPlan
    window: Window
    state_effect: StateEffectResult | None
    started_at: datetime
    source: str
    status: str = "running"  # running | completed | stopped
    ended_at: datetime | None = None
    tally: Tally = field(default_factory=Tally)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def ends_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self.plan.duration_seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scenario_id": self.scenario.id,
            "anomaly_type": self.scenario.anomaly_type,
            "source": self.source,
            "status": self.status,
            "started_at": format_timestamp(self.started_at),
            "ends_at": format_timestamp(self.ends_at),
            "ended_at": format_timestamp(self.ended_at) if self.ended_at else None,
            "duration_seconds": self.plan.duration_seconds,
            "intensity": self.plan.intensity,
            "rate": self.plan.rate,
            "anomalous_share": self.plan.anomalous_share,
            "seed": self.plan.seed,
            "window_id": self.window.id,
            "target_entity": self.window.target_entity,
            "state_effect": self.state_effect.to_json() if self.state_effect else None,
            "records_requested": self.tally.requested,
            "logs_generated": self.tally.produced,
            "records_failed": self.tally.failed,
            "synthesis_retries": self.tally.retries,
            "last_error": self.tally.last_error,
        }


def tick_count(rate: float, tick: int) -> int:
    """Records due in tick ``tick``: cumulative floor, so fractional rates add up exactly."""
    return math.floor(rate * (tick + 1) * TICK_SECONDS) - math.floor(rate * tick * TICK_SECONDS)


def tick_start(execution: Execution, tick: int) -> datetime:
    return execution.window.start + timedelta(seconds=tick * TICK_SECONDS)


def plan_tick(
    execution: Execution, tick: int, known: Sequence[Window] = ()
) -> list[SynthesisRequest]:
    """The calls of one tick; they carry the other ``known`` windows overlapping the tick, so
    records in their scope are labelled with them."""
    count = tick_count(execution.plan.rate, tick)
    window = execution.window
    context = context_for(window)
    others = tuple(context_for(w) for w in known if w.id != window.id)
    timestamp = tick_start(execution, tick)
    seed = execution.plan.seed
    return [
        SynthesisRequest(
            count=chunk,
            seed=None if seed is None else derive_seed(seed, tick, index),
            timestamp=timestamp,
            spread_seconds=TICK_SECONDS,
            services=window.services,
            anomaly=context,
            anomalous_share=execution.plan.anomalous_share,
            windows=others,
        )
        for index, chunk in enumerate(split_count(count))
    ]


class Executions:
    def __init__(self, synthesis: SynthesisClient, ground_truth: GroundTruth) -> None:
        self._synthesis = synthesis
        self._ground_truth = ground_truth
        self._lock = threading.Lock()
        self._executions: OrderedDict[str, Execution] = OrderedDict()

    def start(
        self,
        scenario: Scenario,
        plan: ExecutionPlan,
        window: Window,
        state_effect: StateEffectResult | None,
        source: str,
    ) -> Execution:
        execution = Execution(
            id=uuid.uuid4().hex,
            scenario=scenario,
            plan=plan,
            window=window,
            state_effect=state_effect,
            started_at=window.start,
            source=source,
        )
        execution.thread = threading.Thread(
            target=self._run, args=(execution,), name=f"execution-{execution.id[:8]}", daemon=True
        )
        with self._lock:
            self._executions[execution.id] = execution
            self._forget_finished()
        execution.thread.start()
        return execution

    def ensure_capacity(self) -> None:
        if self.running_count() >= MAX_RUNNING:
            raise TooManyExecutions(MAX_RUNNING)

    def running_count(self) -> int:
        with self._lock:
            return sum(1 for e in self._executions.values() if e.status == "running")

    def get(self, execution_id: str) -> Execution:
        with self._lock:
            execution = self._executions.get(execution_id)
        if execution is None:
            raise ExecutionNotFound(execution_id)
        return execution

    def list(self, status: str | None = None) -> list[Execution]:
        with self._lock:
            executions = list(self._executions.values())
        return [e for e in reversed(executions) if status is None or e.status == status]

    def stop(self, execution_id: str) -> Execution:
        execution = self.get(execution_id)
        execution.stop.set()
        if execution.thread is not None:
            execution.thread.join(STOP_JOIN_SECONDS)
        return execution

    def stop_all(self) -> None:
        for execution in self.list(status="running"):
            self.stop(execution.id)

    def _run(self, execution: Execution) -> None:
        total = max(1, math.ceil(execution.plan.duration_seconds / TICK_SECONDS))
        # The window may start a little later than now (the planning horizon): tick n is made
        # when its records' time comes, so planning never runs further ahead of the clock.
        delay = (execution.window.start - datetime.now(UTC)).total_seconds()
        schedule = Schedule(TICK_SECONDS, time.monotonic() + max(0.0, delay), total)
        try:
            while not schedule.finished():
                if execution.stop.wait(max(0.0, schedule.next_due() - time.monotonic())):
                    break
                self._produce_due_ticks(execution, schedule)
            if not execution.stop.is_set():
                remaining = execution.ends_at - datetime.now(UTC)
                execution.stop.wait(max(0.0, remaining.total_seconds()))
        finally:
            self._finish(execution)

    def _produce_due_ticks(self, execution: Execution, schedule: Schedule) -> None:
        # Every due tick is produced, late or not: an execution's count is what it promised.
        for _ in range(schedule.due_count(time.monotonic())):
            if execution.stop.is_set():
                return
            start = tick_start(execution, schedule.done)
            known = self._ground_truth.plan(start, start + timedelta(seconds=TICK_SECONDS))
            requests = plan_tick(execution, schedule.done, known)
            produce(
                self._synthesis, requests, stop=execution.stop, tally=execution.tally,
                source="execution",
            )  # fmt: skip
            schedule.advance(1)

    def _finish(self, execution: Execution) -> None:
        execution.status = "stopped" if execution.stop.is_set() else "completed"
        execution.ended_at = datetime.now(UTC)
        self._ground_truth.close_window(execution.window.id, execution.ended_at)
        metrics.EXECUTIONS.labels(execution.status).inc()

    def _forget_finished(self) -> None:
        while len(self._executions) > MAX_KEPT:
            oldest = next((k for k, e in self._executions.items() if e.status != "running"), None)
            if oldest is None:
                return
            del self._executions[oldest]

"""``Orchestrator``: the one object the HTTP routes and the control panel call. It owns the
scenario catalogue, ground truth, executions, the continuous generator and the clients of Log
Synthesis and the State Manager, and answers with typed objects (scenarios, executions, windows,
generator stats), never with the parts themselves."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from stages.common.config import Settings
from stages.common.http import service_client
from stages.orchestrator import metrics
from stages.orchestrator.clients import StateClient, StateEffectResult, SynthesisClient
from stages.orchestrator.continuous import ContinuousConfig, ContinuousGenerator, GeneratorStats
from stages.orchestrator.effects import apply_state_effect
from stages.orchestrator.errors import (
    InvalidHistory,
    ScenarioNotFound,
    TooManyOpenWindows,
    UnknownAnomalyType,
    UnknownTarget,
)
from stages.orchestrator.executions import Execution, ExecutionPlan, Executions
from stages.orchestrator.ground_truth import GroundTruth, Window, WindowScope, scope_for
from stages.orchestrator.history import (
    HistoryConfig,
    HistoryProgress,
    HistoryRunner,
    PlannedWindow,
    ScheduledWindow,
    plan_windows,
)
from stages.orchestrator.scenario_catalogue import Scenario, ScenarioCatalogue, scenario_id

log = logging.getLogger(__name__)

GROUND_TRUTH_FILE = "ground_truth.jsonl"
PEER_HEALTH_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class ScenarioCounts:
    """Scenarios per category and per severity, and every anomaly type the catalogue has."""

    categories: dict[str, int]
    severities: dict[str, int]
    anomaly_types: list[str]


@dataclass(frozen=True)
class TriggerResult:
    mode: Literal["continuous", "execution"]
    window: Window
    state_effect: StateEffectResult | None
    execution: Execution | None


class Orchestrator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._catalogue = ScenarioCatalogue()
        self._ground_truth = GroundTruth(settings.data_dir / GROUND_TRUTH_FILE)
        self._clients: dict[str, httpx.Client] = {}
        self._executions: Executions | None = None
        self._continuous: ContinuousGenerator | None = None
        self._state: StateClient | None = None
        self._synthesis: SynthesisClient | None = None
        self._emitters: dict[str, tuple[str, ...]] | None = None
        self._history: HistoryRunner | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def open(self) -> None:
        synthesis_http = service_client(self.settings, "synthesis")
        state_http = service_client(self.settings, "state")
        self._clients = {"synthesis": synthesis_http, "state": state_http}
        synthesis = self._synthesis = SynthesisClient(synthesis_http)
        self._state = StateClient(state_http)
        self._executions = Executions(synthesis, self._ground_truth)
        self._continuous = ContinuousGenerator(
            synthesis, self._ground_truth, self._catalogue.all(), self._open_anomaly_window
        )
        self._history = HistoryRunner(
            synthesis, self._record_history_window, self.settings.history_calls_in_flight
        )

    def close(self) -> None:
        if self._history is not None:
            self._history.stop_all()
        if self._continuous is not None:
            self._continuous.stop()
        if self._executions is not None:
            self._executions.stop_all()
        for client in self._clients.values():
            client.close()

    @property
    def _execution_registry(self) -> Executions:
        assert self._executions is not None, "Orchestrator.open() was not called"
        return self._executions

    @property
    def _generator(self) -> ContinuousGenerator:
        assert self._continuous is not None, "Orchestrator.open() was not called"
        return self._continuous

    # --- scenarios ----------------------------------------------------------------------------
    def search_scenarios(
        self, *, category: str | None, severity: str | None, q: str | None
    ) -> list[Scenario]:
        return self._catalogue.search(category=category, severity=severity, q=q)

    def scenario_counts(self) -> ScenarioCounts:
        return ScenarioCounts(
            categories=self._catalogue.categories(),
            severities=self._catalogue.severities(),
            anomaly_types=self._catalogue.anomaly_types(),
        )

    def anomaly_types(self) -> list[str]:
        return self._catalogue.anomaly_types()

    def scenario(self, scenario_id: str) -> Scenario:
        scenario = self._catalogue.get(scenario_id)
        if scenario is None:
            raise ScenarioNotFound(scenario_id)
        return scenario

    def scenarios_for_type(self, anomaly_type: str) -> list[Scenario]:
        scenarios = self._catalogue.for_type(anomaly_type)
        if not scenarios:
            raise UnknownAnomalyType(anomaly_type, self._catalogue.anomaly_types())
        return scenarios

    # --- executions and triggers --------------------------------------------------------------
    def execute_scenario(
        self,
        scenario_id: str,
        *,
        duration_seconds: float | None,
        intensity: float | None,
        rate: float,
        anomalous_share: float,
        seed: int | None,
    ) -> Execution:
        """Run a scenario; unset duration and intensity come from its definition."""
        plan = self.plan_for(
            self.scenario(scenario_id),
            duration_seconds=duration_seconds,
            intensity=intensity,
            rate=rate,
            anomalous_share=anomalous_share,
            seed=seed,
        )
        return self.execute(scenario_id, plan)

    def execute(self, scenario_id: str, plan: ExecutionPlan, source: str = "api") -> Execution:
        scenario = self.scenario(scenario_id)
        self._execution_registry.ensure_capacity()
        rng = random.Random(plan.seed)
        window, effect = self._open_window_with_effect(
            scenario, plan.intensity, plan.duration_seconds, f"execution:{source}", rng
        )
        return self._execution_registry.start(scenario, plan, window, effect, source)

    def plan_for(
        self,
        scenario: Scenario,
        *,
        duration_seconds: float | None,
        intensity: float | None,
        rate: float,
        anomalous_share: float,
        seed: int | None,
    ) -> ExecutionPlan:
        return ExecutionPlan(
            duration_seconds=duration_seconds or float(scenario.default_duration_seconds),
            intensity=float(scenario.default_intensity if intensity is None else intensity),
            rate=rate,
            anomalous_share=anomalous_share,
            seed=seed,
        )

    def trigger(
        self,
        anomaly_type: str,
        *,
        intensity: float | None,
        duration_seconds: float | None,
        target: str | None,
        rate: float,
    ) -> TriggerResult:
        """Open a window the running generator folds in, or run a short execution if none runs."""
        scenario = self._trigger_scenario(anomaly_type, target)
        plan = self.plan_for(
            scenario, duration_seconds=duration_seconds, intensity=intensity, rate=rate,
            anomalous_share=0.7, seed=None,
        )  # fmt: skip
        if self._generator.running:
            window, effect = self._open_window_with_effect(
                scenario, plan.intensity, plan.duration_seconds, "trigger", random.Random()
            )
            return TriggerResult("continuous", window, effect, None)
        execution = self.execute(scenario.id, plan, source="trigger")
        return TriggerResult("execution", execution.window, execution.state_effect, execution)

    def _trigger_scenario(self, anomaly_type: str, target: str | None) -> Scenario:
        scenarios = self.scenarios_for_type(anomaly_type)
        if target is None:
            return scenarios[0]
        scenario = self._catalogue.get(scenario_id(anomaly_type, target))
        if scenario is None:
            raise UnknownTarget(anomaly_type, target, [s.target.name for s in scenarios])
        return scenario

    def _open_window_with_effect(
        self,
        scenario: Scenario,
        intensity: float,
        duration_seconds: float,
        source: str,
        rng: random.Random,
        start: datetime | None = None,
    ) -> tuple[Window, StateEffectResult | None]:
        assert self._state is not None
        # Checked before the effect, so a refused window leaves the State Manager alone.
        self._ground_truth.ensure_capacity()
        effect = apply_state_effect(
            self._state, scenario, rng, reason=f"scenario {scenario.id} ({source})"
        )
        entity = effect.entity_id if effect is not None else None
        window = self._ground_truth.open_window(
            scenario,
            intensity=intensity,
            duration_seconds=duration_seconds,
            source=source,
            target_entity=entity,
            scope=self.window_scope(scenario),
            start=start,
        )
        return window, effect

    def window_scope(self, scenario: Scenario) -> WindowScope:
        """The records the scenario's windows cover, with the log types' emitters as Log
        Synthesis reports them (see ``ground_truth.scope_for``)."""
        return scope_for(scenario, self._log_type_emitters())

    def _log_type_emitters(self) -> dict[str, tuple[str, ...]]:
        if self._emitters is None and self._synthesis is not None:
            try:
                self._emitters = self._synthesis.log_type_emitters()
            except (httpx.HTTPError, ValueError) as exc:
                # Asked again at the next window; this one scopes its logs to the targets.
                metrics.EMITTERS_UNKNOWN.inc()
                log.warning(
                    "cannot read synthesis log types (%s); scoping logs to the targets", exc
                )
        return self._emitters or {}

    def _open_anomaly_window(
        self,
        scenario: Scenario,
        intensity: float,
        duration_seconds: float,
        source: str,
        rng: random.Random,
        start: datetime,
    ) -> Window | None:
        try:
            opened = self._open_window_with_effect(
                scenario, intensity, duration_seconds, source, rng, start
            )
        except TooManyOpenWindows:
            return None
        return opened[0]

    # --- running and finished executions ------------------------------------------------------
    def executions(self, status: str | None = None) -> list[Execution]:
        """Newest first; ``status`` keeps only running, completed or stopped ones."""
        return self._execution_registry.list(status)

    def execution(self, execution_id: str) -> Execution:
        return self._execution_registry.get(execution_id)

    def stop_execution(self, execution_id: str) -> Execution:
        return self._execution_registry.stop(execution_id)

    # --- continuous ---------------------------------------------------------------------------
    def start_continuous(self, config: ContinuousConfig) -> GeneratorStats:
        return self._generator.start(config)

    def stop_continuous(self) -> GeneratorStats:
        """Stops the running generator and waits for its calls; a no-op when none runs."""
        return self._generator.stop()

    def continuous_stats(self) -> GeneratorStats:
        return self._generator.stats()

    # --- history ------------------------------------------------------------------------------
    @property
    def _history_runner(self) -> HistoryRunner:
        assert self._history is not None, "Orchestrator.open() was not called"
        return self._history

    def history_config(
        self,
        *,
        start: datetime | None,
        end: datetime | None,
        days: float | None,
        resolution_seconds: float,
        services: tuple[str, ...] | None,
        metrics: tuple[str, ...] | None,
        seed: int | None,
        logs_apm_per_step: int,
        rate_per_day: float | None,
        schedule: tuple[ScheduledWindow, ...] | None,
        normal_only_ranges: tuple[tuple[datetime, datetime], ...],
        trend_per_day: float,
        weekly_amplitude: float,
        now: datetime | None = None,
    ) -> HistoryConfig:
        """A checked history request: every refusal is an ``InvalidHistory`` (422) that says
        what to change."""
        now = now or datetime.now(UTC)
        if days is not None and (start is not None or end is not None):
            raise InvalidHistory("give either days or start and end, not both")
        if days is not None:
            end = now
            start = now - timedelta(days=days)
        if start is None or end is None:
            raise InvalidHistory("give start and end (RFC 3339 with a time zone), or days")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            raise InvalidHistory(
                f"end ({end.isoformat()}) must be after start ({start.isoformat()})"
            )
        if end > now + timedelta(seconds=1):
            raise InvalidHistory(
                f"end ({end.isoformat()}) is in the future; history ends at the latest now"
            )
        if start.year < 2000:
            raise InvalidHistory("start must be in 2000 or later")
        limit = self.settings.history_max_days
        if end - start > timedelta(days=limit):
            raise InvalidHistory(
                f"the range is {(end - start).total_seconds() / 86_400:.2f} days; at most "
                f"{limit:g} (HISTORY_MAX_DAYS)"
            )
        if (end - start).total_seconds() < resolution_seconds:
            raise InvalidHistory("the range is shorter than one resolution step")
        if rate_per_day is not None and schedule is not None:
            raise InvalidHistory("give anomalies.rate_per_day or anomalies.schedule, not both")
        for r_start, r_end in normal_only_ranges:
            if r_end <= r_start:
                raise InvalidHistory("each normal_only_range needs end after start")
        config = HistoryConfig(
            start=start,
            end=end,
            seed=random.randrange(2**31) if seed is None else seed,
            resolution_seconds=resolution_seconds,
            services=services or HistoryConfig.services,
            metrics=metrics,
            logs_apm_per_step=logs_apm_per_step,
            rate_per_day=rate_per_day or 0.0,
            schedule=schedule or (),
            normal_only_ranges=normal_only_ranges,
            trend_per_day=trend_per_day,
            weekly_amplitude=weekly_amplitude,
        )
        if config.series_count() == 0:
            raise InvalidHistory("none of the metrics is reported by the services")
        self._check_schedule(config)
        return config

    def _check_schedule(self, config: HistoryConfig) -> None:
        for item in config.schedule:
            scenario = self._catalogue.get(item.scenario_id)
            if scenario is None:
                raise InvalidHistory(
                    f"unknown scenario {item.scenario_id!r}; see GET /api/scenarios",
                    detail={"scenario_id": item.scenario_id},
                )
            end = item.start + timedelta(
                seconds=item.duration_seconds or scenario.default_duration_seconds
            )
            if item.start < config.start or end > config.end:
                raise InvalidHistory(
                    f"the window of {item.scenario_id} at {item.start.isoformat()} does not fit "
                    "in the range"
                )
            if scenario.target.primary_service not in config.services:
                raise InvalidHistory(
                    f"{item.scenario_id} targets {scenario.target.primary_service}, which is not "
                    "among the history's services",
                    detail={"services": list(config.services)},
                )

    def plan_history(self, config: HistoryConfig) -> list[PlannedWindow]:
        return plan_windows(config, self.scenario, self._catalogue.all())

    def start_history(self, config: HistoryConfig) -> HistoryProgress:
        return self._history_runner.start(config, self.plan_history(config))

    def history(self, history_id: str) -> HistoryProgress:
        return self._history_runner.get(history_id)

    def histories(self) -> list[HistoryProgress]:
        return self._history_runner.list()

    def stop_history(self, history_id: str) -> HistoryProgress:
        return self._history_runner.stop(history_id)

    def _record_history_window(self, planned: PlannedWindow, source: str) -> Window:
        return self._ground_truth.record_window(
            planned.scenario,
            start=planned.start,
            end=planned.end,
            intensity=planned.intensity,
            source=source,
            scope=self.window_scope(planned.scenario),
        )

    # --- ground truth and status --------------------------------------------------------------
    def windows(self, *, only_open: bool | None) -> list[Window]:
        self._ground_truth.close_expired()
        return self._ground_truth.list(only_open=only_open)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy when the ground-truth directory is writable; peers are reported, not
        required, so the orchestrator can start before them and report what is missing."""
        directory = self._ground_truth.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            writable = os.access(directory, os.W_OK)
        except OSError:
            writable = False
        details: dict[str, Any] = {
            "ground_truth_writable": writable,
            "continuous_running": self._continuous is not None and self._continuous.running,
            "peers": {prefix: self._peer_status(prefix) for prefix in ("synthesis", "state")},
        }
        if not writable:
            details["reason"] = f"cannot write ground truth under {directory}"
        return writable, details

    def _peer_status(self, prefix: str) -> str:
        client = self._clients.get(prefix)
        if client is None:
            return "not connected"
        try:
            resp = client.get("/health", timeout=PEER_HEALTH_TIMEOUT_SECONDS)
        except httpx.HTTPError:
            return "unreachable"
        return "healthy" if resp.status_code == 200 else f"unhealthy ({resp.status_code})"

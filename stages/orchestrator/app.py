"""HTTP routes of the Scenario Orchestrator; all behaviour lives in ``control.Orchestrator``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, fields
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request

from stages.common.config import Settings, get_settings
from stages.common.records import format_timestamp
from stages.common.service import ControlToken, configure_logging, create_service_app, run_service
from stages.orchestrator.continuous import ContinuousConfig, GeneratorStats
from stages.orchestrator.control import GROUND_TRUTH_FILE, Orchestrator
from stages.orchestrator.executions import Execution
from stages.orchestrator.ground_truth import Window
from stages.orchestrator.history import HistoryProgress, ScheduledWindow
from stages.orchestrator.panel import panel
from stages.orchestrator.scenario_catalogue import Scenario
from stages.orchestrator.schemas import (
    CategoriesOut,
    CategoryName,
    ContinuousStartRequest,
    ContinuousStats,
    ExecuteRequest,
    ExecutionOut,
    ExecutionPage,
    GroundTruthPage,
    HistoryOut,
    HistoryPage,
    HistoryRequest,
    ScenarioOut,
    ScenarioPage,
    Severity,
    StateEffectResultOut,
    TriggerOut,
    TriggerRequest,
    WindowOut,
)

NAME = "scenario-orchestrator"


_ERRORS = {
    404: "No such scenario, execution or history run",
    409: "A generator or history run already runs, or too many executions run or windows are open",
    422: "The body or a parameter is invalid (unknown fields, out of bounds, unknown type)",
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": _ERRORS[code]} for code in codes}


def get_orchestrator(request: Request) -> Orchestrator:
    return request.app.state.orchestrator


OrchestratorDep = Annotated[Orchestrator, Depends(get_orchestrator)]


def scenario_out(scenario: Scenario) -> ScenarioOut:
    return ScenarioOut.model_validate(asdict(scenario))


def execution_out(execution: Execution) -> ExecutionOut:
    return ExecutionOut.model_validate(execution.to_json())


def window_out(window: Window) -> WindowOut:
    return WindowOut.model_validate(window.to_json())


def config_out(config: ContinuousConfig) -> dict[str, Any]:
    return {
        "interval_seconds": config.interval_seconds,
        "logs_per_interval": config.logs_per_interval,
        "duration_seconds": config.duration_seconds,
        "anomaly_rate": config.anomaly_rate,
        "seed": config.seed,
        "services": list(config.services) if config.services else None,
        "log_types": list(config.log_types) if config.log_types else None,
    }


_CONVERTED_STATS = {"started_at", "config", "active_anomalies"}


def continuous_out(stats: GeneratorStats) -> ContinuousStats:
    # Counters and rates go out as they are; times, the config and windows take their JSON form.
    plain = {
        f.name: getattr(stats, f.name) for f in fields(stats) if f.name not in _CONVERTED_STATS
    }
    return ContinuousStats(
        **plain,
        started_at=format_timestamp(stats.started_at) if stats.started_at else None,
        config=config_out(stats.config) if stats.config else None,
        active_anomalies=[window_out(w) for w in stats.active_anomalies],
    )


def history_out(run: HistoryProgress) -> HistoryOut:
    return HistoryOut(
        id=run.id,
        status=run.status,  # type: ignore[arg-type]
        start=format_timestamp(run.start),
        end=format_timestamp(run.end),
        resolution_seconds=run.resolution_seconds,
        services=list(run.services),
        seed=run.seed,
        started_at=format_timestamp(run.started_at),
        finished_at=format_timestamp(run.finished_at) if run.finished_at else None,
        elapsed_seconds=run.elapsed_seconds,
        chunks_total=run.chunks_total,
        chunks_done=run.chunks_done,
        generated_until=format_timestamp(run.generated_until) if run.generated_until else None,
        records_planned=run.records_planned,
        records_requested=run.records_requested,
        records_accepted=run.records_accepted,
        records_failed=run.records_failed,
        synthesis_calls=run.synthesis_calls,
        synthesis_retries=run.synthesis_retries,
        records_per_second=run.records_per_second,
        simulated_days_per_minute=run.simulated_days_per_minute,
        windows_planned=run.windows_planned,
        windows=[window_out(w) for w in run.windows],
        errors=list(run.errors),
    )


scenarios = APIRouter(prefix="/api/scenarios", tags=["scenarios"])
executions = APIRouter(prefix="/api/executions", tags=["executions"])
continuous = APIRouter(prefix="/api/continuous", tags=["continuous"])
anomalies = APIRouter(prefix="/api", tags=["anomalies"])
history = APIRouter(prefix="/api/history", tags=["history"])


@scenarios.get("", summary="List and filter scenarios")
def list_scenarios(
    orch: OrchestratorDep,
    category: CategoryName | None = None,
    severity: Severity | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> ScenarioPage:
    found = orch.search_scenarios(
        category=category.value if category else None, severity=severity, q=q
    )
    page = [scenario_out(s) for s in found[offset : offset + limit]]
    return ScenarioPage(items=page, total=len(found), limit=limit, offset=offset)


@scenarios.get("/categories", summary="Scenario counts per category and severity")
def scenario_categories(orch: OrchestratorDep) -> CategoriesOut:
    counts = orch.scenario_counts()
    return CategoriesOut(
        categories=counts.categories,
        severities=counts.severities,
        anomaly_types=counts.anomaly_types,
    )


@scenarios.get("/{scenario_id}", summary="One scenario", responses=_responses(404))
def get_scenario(
    orch: OrchestratorDep, scenario_id: Annotated[str, Path(max_length=128)]
) -> ScenarioOut:
    return scenario_out(orch.scenario(scenario_id))


@scenarios.post(
    "/{scenario_id}/execute",
    summary="Run a scenario for a duration at a rate",
    status_code=201,
    responses=_responses(404, 409, 422),
)
def execute_scenario(
    orch: OrchestratorDep, scenario_id: str, body: ExecuteRequest, _: ControlToken
) -> ExecutionOut:
    execution = orch.execute_scenario(
        scenario_id,
        duration_seconds=body.duration_seconds,
        intensity=body.intensity,
        rate=body.rate,
        anomalous_share=body.anomalous_share,
        seed=body.seed,
    )
    return execution_out(execution)


@executions.get("", summary="Executions, newest first")
def list_executions(
    orch: OrchestratorDep,
    status: Annotated[str | None, Query(pattern="^(running|completed|stopped)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ExecutionPage:
    found = orch.executions(status)
    return ExecutionPage(items=[execution_out(e) for e in found[:limit]], total=len(found))


@executions.get("/{execution_id}", summary="One execution", responses=_responses(404))
def get_execution(orch: OrchestratorDep, execution_id: str) -> ExecutionOut:
    return execution_out(orch.execution(execution_id))


@executions.post("/{execution_id}/stop", summary="Stop an execution", responses=_responses(404))
def stop_execution(orch: OrchestratorDep, execution_id: str, _: ControlToken) -> ExecutionOut:
    return execution_out(orch.stop_execution(execution_id))


@continuous.post("/start", summary="Start continuous generation", responses=_responses(409, 422))
def start_continuous(
    orch: OrchestratorDep, body: ContinuousStartRequest, _: ControlToken
) -> ContinuousStats:
    config = ContinuousConfig(
        interval_seconds=body.interval_seconds,
        logs_per_interval=body.logs_per_interval,
        duration_seconds=body.duration_seconds,
        anomaly_rate=body.anomaly_rate,
        seed=body.seed,
        services=tuple(s.value for s in body.services) if body.services else None,
        log_types=tuple(t.value for t in body.log_types) if body.log_types else None,
    )
    return continuous_out(orch.start_continuous(config))


@continuous.post("/stop", summary="Stop continuous generation (no-op when stopped)")
def stop_continuous(orch: OrchestratorDep, _: ControlToken) -> ContinuousStats:
    return continuous_out(orch.stop_continuous())


@continuous.get("/stats", summary="Requested vs measured rate, totals, backlog, anomalies")
def continuous_stats(orch: OrchestratorDep) -> ContinuousStats:
    return continuous_out(orch.continuous_stats())


@anomalies.post(
    "/anomaly/trigger", summary="Open an anomaly window now", responses=_responses(409, 422)
)
def trigger_anomaly(orch: OrchestratorDep, body: TriggerRequest, _: ControlToken) -> TriggerOut:
    result = orch.trigger(
        body.anomaly_type,
        intensity=body.intensity,
        duration_seconds=body.duration_seconds,
        target=body.target,
        rate=body.rate,
    )
    effect = result.state_effect
    return TriggerOut(
        mode=result.mode,
        window=window_out(result.window),
        state_effect=StateEffectResultOut.model_validate(effect.to_json()) if effect else None,
        execution=execution_out(result.execution) if result.execution else None,
    )


@anomalies.get("/ground-truth", summary="Every anomaly window, oldest first")
def ground_truth(
    orch: OrchestratorDep,
    only_open: Annotated[
        bool | None, Query(alias="open", description="true: open windows; false: closed")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> GroundTruthPage:
    windows = orch.windows(only_open=only_open)
    return GroundTruthPage(
        items=[window_out(w) for w in windows[offset : offset + limit]],
        total=len(windows),
        jsonl_path=GROUND_TRUTH_FILE,
    )


@history.post(
    "",
    summary="Generate labelled history for a past range",
    status_code=202,
    responses=_responses(409, 422),
)
def start_history(orch: OrchestratorDep, body: HistoryRequest, _: ControlToken) -> HistoryOut:
    anomalies_ = body.anomalies
    schedule = None
    if anomalies_ is not None and anomalies_.schedule is not None:
        schedule = tuple(
            ScheduledWindow(w.scenario_id, w.start, w.duration_s, w.intensity)
            for w in anomalies_.schedule
        )
    config = orch.history_config(
        start=body.start,
        end=body.end,
        days=body.days,
        resolution_seconds=body.resolution_seconds,
        services=tuple(s.value for s in body.services) if body.services else None,
        metrics=tuple(m.value for m in body.metrics) if body.metrics else None,
        seed=body.seed,
        logs_apm_per_step=body.logs_apm_per_step,
        rate_per_day=anomalies_.rate_per_day if anomalies_ else None,
        schedule=schedule,
        normal_only_ranges=tuple((r.start, r.end) for r in body.normal_only_ranges or ()),
        trend_per_day=body.trend_per_day,
        weekly_amplitude=body.weekly_amplitude,
    )
    return history_out(orch.start_history(config))


@history.get("", summary="History runs, newest first")
def list_histories(orch: OrchestratorDep) -> HistoryPage:
    return HistoryPage(items=[history_out(r) for r in orch.histories()])


@history.get("/{history_id}", summary="A history run's progress", responses=_responses(404))
def get_history(
    orch: OrchestratorDep, history_id: Annotated[str, Path(max_length=64)]
) -> HistoryOut:
    return history_out(orch.history(history_id))


@history.post("/{history_id}/stop", summary="Stop a history run", responses=_responses(404))
def stop_history(
    orch: OrchestratorDep, history_id: Annotated[str, Path(max_length=64)], _: ControlToken
) -> HistoryOut:
    return history_out(orch.stop_history(history_id))


def create_app(settings: Settings) -> FastAPI:
    orchestrator = Orchestrator(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        orchestrator.open()
        app.state.orchestrator = orchestrator
        try:
            yield
        finally:
            orchestrator.close()

    return create_service_app(
        NAME,
        health=orchestrator.health,
        routers=[scenarios, executions, continuous, anomalies, history, panel],
        status_page=False,
        lifespan=lifespan,
        description="Scenario catalogue, executions, continuous generation, anomaly triggers "
        "and ground truth. State effects of scenarios are not reverted when windows close.",
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    # One INFO line per peer call would drown the service's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_service(create_app(settings), settings.orchestrator_host, settings.orchestrator_port)

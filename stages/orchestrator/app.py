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
    404: "No such scenario or execution",
    409: "A generator already runs, or too many executions run or windows are open",
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


scenarios = APIRouter(prefix="/api/scenarios", tags=["scenarios"])
executions = APIRouter(prefix="/api/executions", tags=["executions"])
continuous = APIRouter(prefix="/api/continuous", tags=["continuous"])
anomalies = APIRouter(prefix="/api", tags=["anomalies"])


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
        routers=[scenarios, executions, continuous, anomalies, panel],
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

"""The orchestrator's errors, named after the condition; the shared handler renders them."""

from __future__ import annotations

from collections.abc import Sequence

from stages.common.errors import Conflict, NotFound, Unprocessable


class ScenarioNotFound(NotFound):
    def __init__(self, scenario_id: str) -> None:
        super().__init__(f"no scenario with id {scenario_id!r}; see GET /api/scenarios")


class ExecutionNotFound(NotFound):
    def __init__(self, execution_id: str) -> None:
        super().__init__(f"no execution with id {execution_id!r}; see GET /api/executions")


class GeneratorAlreadyRunning(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "a continuous generator is already running; POST /api/continuous/stop first"
        )


class TooManyExecutions(Conflict):
    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} executions are already running; stop one first")


class TooManyOpenWindows(Conflict):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} anomaly windows are already open; stop an execution or wait for one to end"
        )


class UnknownAnomalyType(Unprocessable):
    def __init__(self, anomaly_type: str, valid: Sequence[str]) -> None:
        super().__init__(f"unknown anomaly_type {anomaly_type!r}", detail={"valid": sorted(valid)})


class UnknownTarget(Unprocessable):
    def __init__(self, anomaly_type: str, target: str, valid: Sequence[str]) -> None:
        super().__init__(
            f"{anomaly_type} has no scenario targeting {target!r}",
            detail={"valid": sorted(valid)},
        )


class HistoryNotFound(NotFound):
    def __init__(self, history_id: str) -> None:
        super().__init__(f"no history run with id {history_id!r}; see GET /api/history")


class HistoryAlreadyRunning(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "a history run is already generating; wait for it or POST /api/history/{id}/stop"
        )


class InvalidHistory(Unprocessable):
    """A history request that cannot be planned (range, schedule, services)."""

"""The State Manager's HTTP API: routes only; rules live in machines.py, storage in store.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, status

from stages.common.config import Settings, get_settings
from stages.common.service import (
    ControlToken,
    configure_logging,
    create_service_app,
    run_service,
)
from stages.state import metrics
from stages.state.machines import EntityType, new_entity_id
from stages.state.schemas import (
    ID_PATTERN,
    MAX_PAGE,
    BulkStateRequest,
    CreateEntity,
    EntityOut,
    EntityPage,
    History,
    StateName,
    Stats,
    TransitionOut,
    TransitionRequest,
)
from stages.state.seed import seed_entities
from stages.state.store import Entity, EntityStore, NewEntity, Transition

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["entities"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No entity with this id"}}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "The id exists, or the transition is not allowed from the current state"}
}


def get_store(request: Request) -> EntityStore:
    return request.app.state.store


StoreDep = Annotated[EntityStore, Depends(get_store)]
PathId = Annotated[str, Path(pattern=ID_PATTERN, description="Entity id")]


def _out(entity: Entity) -> EntityOut:
    return EntityOut(
        id=entity.id,
        type=entity.type,
        state=entity.state,
        attributes=entity.attributes,
        updated_at=entity.updated_at,
    )


def _transition_out(row: Transition) -> TransitionOut:
    return TransitionOut(from_state=row.from_state, to=row.to_state, reason=row.reason, at=row.at)


@router.get("/entities", summary="List entities, filtered by type and state")
def list_entities(
    store: StoreDep,
    type: EntityType | None = None,
    state: StateName | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> EntityPage:
    items, total = store.list(type=type, state=state, limit=limit, offset=offset)
    return EntityPage(items=[_out(e) for e in items], total=total, limit=limit, offset=offset)


@router.post(
    "/entities",
    status_code=status.HTTP_201_CREATED,
    summary="Create an entity in its type's initial state",
    responses=_CONFLICT,
)
def create_entity(body: CreateEntity, store: StoreDep, _: ControlToken) -> EntityOut:
    entity_id = body.id or new_entity_id(body.type)
    return _out(store.create(NewEntity(entity_id, body.type, body.attributes)))


@router.get("/entities/{entity_id}", summary="One entity", responses=_NOT_FOUND)
def get_entity(entity_id: PathId, store: StoreDep) -> EntityOut:
    return _out(store.get(entity_id))


@router.post(
    "/entities/{entity_id}/transition",
    summary="Move an entity to another state (a no-op if it is already there)",
    responses={**_NOT_FOUND, **_CONFLICT, 422: {"description": "Not a state of this type"}},
)
def transition_entity(
    entity_id: PathId, body: TransitionRequest, store: StoreDep, _: ControlToken
) -> EntityOut:
    entity, _changed = store.transition(entity_id, body.to, body.reason)
    return _out(entity)


@router.get(
    "/entities/{entity_id}/history",
    summary="The entity's transitions, oldest first (creation included)",
    responses=_NOT_FOUND,
)
def entity_history(
    entity_id: PathId,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> History:
    rows = store.history(entity_id, limit=limit, offset=offset)
    items = [
        TransitionOut(from_state=r.from_state, to=r.to_state, reason=r.reason, at=r.at)
        for r in rows
    ]
    return History(entity_id=entity_id, items=items)


@router.post(
    "/entities/bulk-state",
    summary="The states of up to 1000 ids at once (null for unknown ids); reads only",
)
def bulk_state(body: BulkStateRequest, store: StoreDep) -> dict[str, str | None]:
    return store.states_of(body.ids)


@router.get("/stats", summary="Entity counts by type and state")
def stats(store: StoreDep) -> Stats:
    by_type = store.counts()
    return Stats(total=sum(sum(s.values()) for s in by_type.values()), by_type=by_type)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = EntityStore(settings.data_dir / "state.db")
        added = store.add_missing(seed_entities(), reason="seeded")
        metrics.SEEDED.inc(added)
        log.info("state database at %s; %d entities seeded", settings.data_dir, added)
        app.state.store = store
        try:
            yield
        finally:
            store.close()

    def health() -> tuple[bool, dict[str, Any]]:
        store: EntityStore | None = getattr(app.state, "store", None)
        if store is None or not store.ping():
            return False, {"reason": "the state database is not open"}
        return True, {}

    def status_counters() -> dict[str, Any]:
        store: EntityStore | None = getattr(app.state, "store", None)
        counts = store.counts() if store is not None else {}
        return {
            "entities": sum(sum(s.values()) for s in counts.values()),
            "entities created": metrics.total(metrics.CREATED),
            "transitions applied": metrics.total(metrics.TRANSITIONS, outcome="applied"),
            "transitions refused": metrics.total(metrics.TRANSITIONS, outcome="invalid"),
            "storage errors": metrics.total(metrics.STORAGE_ERRORS),
        }

    app = create_service_app(
        "state-manager",
        health=health,
        status=status_counters,
        routers=[router],
        lifespan=lifespan,
        description="Users, accounts, sessions, services, hosts, databases and queues, with "
        "their state machines and transition history, persisted in SQLite.",
    )
    return app


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    run_service(create_app(settings), settings.state_host, settings.state_port)

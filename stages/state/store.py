"""Entities and their transition history in SQLite (``<data_dir>/state.db``).

One connection shared by FastAPI's worker threads behind a lock: every operation is a few
milliseconds at most, and a single writer is what SQLite wants anyway. WAL mode with
``synchronous=NORMAL`` survives a killed process (not a power cut), which is what a restart of
the service needs. A transition reads the current state, checks it and writes the new state and
its history row in one ``BEGIN IMMEDIATE`` transaction, so two concurrent transitions of one
entity cannot both pass the check.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stages.common.errors import Conflict, NotFound, Unavailable
from stages.state import metrics
from stages.state.machines import MACHINES, InvalidTransition, UnknownState, check_transition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entities_type_state ON entities (type, state, id);
CREATE INDEX IF NOT EXISTS entities_state ON entities (state, id);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id TEXT NOT NULL REFERENCES entities (id),
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_entity ON transitions (entity_id, seq);
"""


@dataclass(frozen=True)
class Entity:
    id: str
    type: str
    state: str
    attributes: dict[str, Any]
    updated_at: str


@dataclass(frozen=True)
class Transition:
    from_state: str | None
    to_state: str
    reason: str
    at: str


@dataclass(frozen=True)
class NewEntity:
    id: str
    type: str
    attributes: dict[str, Any]


def now() -> str:
    """RFC 3339 UTC with milliseconds, like every timestamp the project emits."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EntityStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the lock; storage failures become a 503."""
        with self._read() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.OperationalError as exc:
                metrics.STORAGE_ERRORS.inc()
                raise Unavailable(f"the state database is unavailable: {exc}") from exc

    def ping(self) -> bool:
        try:
            with self._read() as db:
                db.execute("SELECT 1").fetchone()
            return True
        except (Unavailable, sqlite3.Error):
            return False

    # --- writes -------------------------------------------------------------------------

    def add_missing(self, entities: Iterable[NewEntity], reason: str) -> int:
        """Insert the entities whose id is not stored yet; returns how many were new."""
        at = now()
        with self._write() as db:
            existing = {row[0] for row in db.execute("SELECT id FROM entities")}
            fresh = [e for e in entities if e.id not in existing]
            db.executemany(
                "INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?)",
                [_entity_row(e, at) for e in fresh],
            )
            db.executemany(
                "INSERT INTO transitions (entity_id, from_state, to_state, reason, at) "
                "VALUES (?, NULL, ?, ?, ?)",
                [(e.id, MACHINES[e.type].initial, reason, at) for e in fresh],
            )
        return len(fresh)

    def create(self, entity: NewEntity, reason: str = "created") -> Entity:
        at = now()
        with self._write() as db:
            if db.execute("SELECT 1 FROM entities WHERE id = ?", (entity.id,)).fetchone():
                raise Conflict(f"an entity with id {entity.id!r} already exists")
            db.execute("INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?)", _entity_row(entity, at))
            db.execute(
                "INSERT INTO transitions (entity_id, from_state, to_state, reason, at) "
                "VALUES (?, NULL, ?, ?, ?)",
                (entity.id, MACHINES[entity.type].initial, reason, at),
            )
        metrics.CREATED.labels(entity.type).inc()
        return Entity(entity.id, entity.type, MACHINES[entity.type].initial, entity.attributes, at)

    def transition(self, entity_id: str, to: str, reason: str) -> tuple[Entity, bool]:
        """Moves the entity to ``to``; returns it and whether anything changed."""
        with self._write() as db:
            entity = _fetch(db, entity_id)
            try:
                changes = check_transition(entity.id, entity.type, entity.state, to)
            except (InvalidTransition, UnknownState) as exc:
                outcome = "invalid" if isinstance(exc, InvalidTransition) else "unknown_state"
                metrics.TRANSITIONS.labels(entity.type, outcome).inc()
                raise
            if not changes:
                metrics.TRANSITIONS.labels(entity.type, "noop").inc()
                return entity, False
            at = now()
            db.execute(
                "UPDATE entities SET state = ?, updated_at = ? WHERE id = ?", (to, at, entity_id)
            )
            db.execute(
                "INSERT INTO transitions (entity_id, from_state, to_state, reason, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (entity_id, entity.state, to, reason, at),
            )
        metrics.TRANSITIONS.labels(entity.type, "applied").inc()
        return Entity(entity.id, entity.type, to, entity.attributes, at), True

    # --- reads --------------------------------------------------------------------------

    def get(self, entity_id: str) -> Entity:
        with self._read() as db:
            return _fetch(db, entity_id)

    def list(
        self, *, type: str | None, state: str | None, limit: int, offset: int
    ) -> tuple[list[Entity], int]:
        where, args = _filters(type, state)
        with self._read() as db:
            total = db.execute(f"SELECT COUNT(*) FROM entities{where}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM entities{where} ORDER BY id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [_entity(row) for row in rows], total

    def history(self, entity_id: str, *, limit: int, offset: int) -> list[Transition]:
        with self._read() as db:
            _fetch(db, entity_id)
            rows = db.execute(
                "SELECT from_state, to_state, reason, at FROM transitions WHERE entity_id = ? "
                "ORDER BY seq LIMIT ? OFFSET ?",
                (entity_id, limit, offset),
            ).fetchall()
        return [Transition(*row) for row in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """{type: {state: count}}."""
        with self._read() as db:
            rows = db.execute(
                "SELECT type, state, COUNT(*) FROM entities GROUP BY type, state"
            ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for entity_type, state, count in rows:
            counts.setdefault(entity_type, {})[state] = count
        return counts

    def states_of(self, ids: list[str]) -> dict[str, str | None]:
        """Each id's state, None for ids that are not stored."""
        states: dict[str, str | None] = dict.fromkeys(ids)
        with self._read() as db:
            marks = ",".join("?" * len(ids))
            if ids:
                query = f"SELECT id, state FROM entities WHERE id IN ({marks})"
                states.update(db.execute(query, ids).fetchall())
        return states


_COLUMNS = "id, type, state, attributes, updated_at"


def _entity_row(entity: NewEntity, at: str) -> tuple[str, ...]:
    initial = MACHINES[entity.type].initial
    attributes = json.dumps(entity.attributes, separators=(",", ":"))
    return entity.id, entity.type, initial, attributes, at, at


def _entity(row: tuple[Any, ...]) -> Entity:
    entity_id, entity_type, state, attributes, updated_at = row
    loaded = json.loads(attributes)
    if "\\ud" in attributes.lower():
        # A lone surrogate, written before writes were validated, cannot be sent as UTF-8: one
        # such row would fail every list of its type. It reads back as U+FFFD instead.
        loaded = _replace_lone_surrogates(loaded)
    return Entity(entity_id, entity_type, state, loaded, updated_at)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    return value


def _fetch(db: sqlite3.Connection, entity_id: str) -> Entity:
    row = db.execute(f"SELECT {_COLUMNS} FROM entities WHERE id = ?", (entity_id,)).fetchone()
    if row is None:
        raise NotFound(f"no entity with id {entity_id!r}")
    return _entity(row)


def _filters(entity_type: str | None, state: str | None) -> tuple[str, tuple[str, ...]]:
    clauses = [(column, value) for column, value in (("type", entity_type), ("state", state))]
    present = [(column, value) for column, value in clauses if value is not None]
    if not present:
        return "", ()
    where = " WHERE " + " AND ".join(f"{column} = ?" for column, _ in present)
    return where, tuple(value for _, value in present)

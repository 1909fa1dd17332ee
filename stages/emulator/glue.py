"""Glue's optimistic locking in the embedded emulator.

Iceberg's Glue catalog commits by ``UpdateTable(..., VersionId=<the version it read>)``: AWS Glue
refuses the update with ``ConcurrentModificationException`` when the table has moved on since, so
of two writers that read the same version one commits and the other retries on the new metadata.
moto ignores ``VersionId``, so both "succeed", the second metadata pointer replaces the first and
the first writer's rows are gone from the table. Here the version check and the update happen
under one lock (the emulator serves requests from a pool of threads), and a create of a table that
already exists stays refused even when two creates race.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.glue import models, responses
from moto.glue.exceptions import GlueClientError
from moto.glue.models import GlueBackend
from moto.glue.responses import GlueResponse

_lock = threading.Lock()
_applied = False


class ConcurrentModificationException(GlueClientError):
    def __init__(self, database_name: str, table_name: str, version_id: str, current: str):
        super().__init__(
            "ConcurrentModificationException",
            f"Update table {database_name}.{table_name} failed due to concurrent modifications: "
            f"VersionId {version_id} is not the current version {current}.",
        )


_original_update_table = GlueBackend.update_table
_original_create_table = GlueBackend.create_table


def _update_table(
    self: GlueBackend,
    database_name: str,
    table_name: str,
    table_input: dict[str, Any],
    version_id: str | None = None,
) -> None:
    with _lock:
        if version_id is not None:
            table = self.get_table(database_name, table_name)
            current = str(table._current_version)
            if version_id != current:
                raise ConcurrentModificationException(
                    database_name, table_name, version_id, current
                )
        _original_update_table(self, database_name, table_name, table_input)


def _create_table(self: GlueBackend, *args: Any, **kwargs: Any) -> models.FakeTable:
    with _lock:
        return _original_create_table(self, *args, **kwargs)


def _update_table_response(self: GlueResponse) -> Any:
    database_name = self.parameters.get("DatabaseName")
    table_input = self.parameters.get("TableInput")
    table_name = table_input.get("Name")  # type: ignore[union-attr]
    version_id = self.parameters.get("VersionId")
    self.glue_backend.update_table(database_name, table_name, table_input, version_id)  # type: ignore[arg-type,call-arg]
    return responses.EmptyResult()


def apply() -> None:
    """Install the version check; idempotent."""
    global _applied
    if _applied:
        return
    GlueBackend.update_table = _update_table  # type: ignore[method-assign]
    GlueBackend.create_table = _create_table  # type: ignore[method-assign]
    GlueResponse.update_table = _update_table_response  # type: ignore[method-assign]
    _applied = True

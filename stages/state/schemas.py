"""Request and response models of the State Manager's HTTP API."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stages.common.records import StorableText, check_storable
from stages.state.machines import ALL_STATES, EntityType

# Ids become SQL parameters only, but they are also echoed in logs and URLs: keep them plain.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
EntityId = Annotated[str, Field(pattern=ID_PATTERN, description="Letters, digits, _ . : -")]
StateName = Literal[ALL_STATES]  # type: ignore[valid-type]
MAX_PAGE = 1000
MAX_BULK_IDS = 1000
MAX_ATTRIBUTES_BYTES = 16 * 1024


class EntityOut(BaseModel):
    id: str
    type: str
    state: str
    attributes: dict[str, Any]
    updated_at: str


class EntityPage(BaseModel):
    items: list[EntityOut]
    total: int = Field(description="Entities matching the filters, over all pages.")
    limit: int
    offset: int


class CreateEntity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EntityType
    id: EntityId | None = Field(None, description="Generated (e.g. acc-3f9c0a1b2c3d) if absent.")
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=64)

    @field_validator("attributes")
    @classmethod
    def _attributes_are_small(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_storable(value, "attributes")
        size = len(json.dumps(value, separators=(",", ":")))
        if size > MAX_ATTRIBUTES_BYTES:
            raise ValueError(
                f"attributes take {size} bytes as JSON; at most {MAX_ATTRIBUTES_BYTES}"
            )
        return value


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(pattern=r"^[a-z_]{1,32}$", description="The target state.")
    reason: StorableText = Field(
        "", max_length=500, description="Why, e.g. the scenario that caused it."
    )


class TransitionOut(BaseModel):
    from_state: str | None = Field(serialization_alias="from")
    to: str
    reason: str
    at: str


class History(BaseModel):
    entity_id: str
    items: list[TransitionOut]


class Stats(BaseModel):
    total: int
    by_type: dict[str, dict[str, int]] = Field(description="type -> state -> count")


class BulkStateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[EntityId] = Field(max_length=MAX_BULK_IDS)

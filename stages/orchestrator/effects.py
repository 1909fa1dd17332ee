"""A scenario's state effect, applied through the State Manager when its window opens.

Effects are not reverted when the window closes: a locked account stays locked until someone
unlocks it, as in production. Every outcome (applied, unchanged, rejected with the allowed
transitions, entity not found, State Manager unreachable) is returned to the caller and counted.
"""

from __future__ import annotations

import random
from typing import Any

import httpx

from stages.orchestrator import metrics
from stages.orchestrator.clients import StateClient, StateEffectResult
from stages.orchestrator.scenario_catalogue import Scenario

BUSINESS_KINDS = ("account", "user")


def find_entity(
    items: list[dict[str, Any]], scenario: Scenario, rng: random.Random
) -> dict[str, Any] | None:
    """The estate entity the scenario names, or for a business target a random active one."""
    if scenario.target.kind in BUSINESS_KINDS:
        active = [i for i in items if i.get("state") == "active"]
        pool = sorted(active or items, key=lambda i: i["id"])
        return rng.choice(pool) if pool else None
    name = scenario.state_effect.entity if scenario.state_effect else scenario.target.name
    for item in items:
        attributes = item.get("attributes") or {}
        if name in (item["id"], attributes.get("name")):
            return item
    return None


def apply_state_effect(
    state: StateClient, scenario: Scenario, rng: random.Random, reason: str
) -> StateEffectResult | None:
    effect = scenario.state_effect
    if effect is None:
        return None
    result = StateEffectResult(entity_type=effect.entity_type, to_state=effect.to_state)
    try:
        entity = find_entity(state.entities(effect.entity_type), scenario, rng)
        if entity is None:
            result.outcome = "not_found"
            result.detail = f"no {effect.entity_type} entity matches {effect.entity!r}"
        else:
            result.entity_id = entity["id"]
            result.previous_state = entity.get("state")
            _transition(state, result, reason)
    except httpx.HTTPError as exc:
        result.outcome = "failed"
        result.detail = f"State Manager unreachable or failing: {type(exc).__name__}"
    metrics.STATE_EFFECTS.labels(result.outcome).inc()
    return result


def _transition(state: StateClient, result: StateEffectResult, reason: str) -> None:
    assert result.entity_id is not None
    resp = state.transition(result.entity_id, result.to_state, reason)
    if resp.status_code == 200:
        result.outcome = "unchanged" if result.previous_state == result.to_state else "applied"
    elif resp.status_code == 409:
        result.outcome = "rejected"
        result.detail = _json_or_text(resp)
    else:
        result.outcome = "failed"
        result.detail = f"State Manager answered {resp.status_code}: {resp.text[:300]}"


def _json_or_text(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:300]

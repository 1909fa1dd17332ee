"""The state machines on their own (no storage, no HTTP)."""

from __future__ import annotations

import pytest

from stages.state.machines import (
    BUSINESS,
    MACHINES,
    SYSTEM,
    InvalidTransition,
    UnknownState,
    check_transition,
)


@pytest.mark.parametrize(
    ("current", "to"),
    [("active", "suspended"), ("active", "locked"), ("suspended", "active"),
     ("suspended", "closed"), ("locked", "active"), ("locked", "closed")],
)  # fmt: skip
def test_business_transitions_allowed(current: str, to: str) -> None:
    assert check_transition("acc-1", "account", current, to) is True


@pytest.mark.parametrize(
    ("current", "to"),
    [("healthy", "degraded"), ("degraded", "down"), ("down", "degraded"),
     ("degraded", "healthy"), ("healthy", "maintenance"), ("down", "maintenance"),
     ("maintenance", "healthy")],
)  # fmt: skip
def test_system_transitions_allowed(current: str, to: str) -> None:
    assert check_transition("users-db", "database", current, to) is True


def test_closed_is_final_and_the_error_lists_nothing_allowed() -> None:
    with pytest.raises(InvalidTransition) as err:
        check_transition("acc-1", "account", "closed", "active")
    assert err.value.status_code == 409
    assert err.value.detail == {"current": "closed", "allowed": []}


def test_down_recovers_through_degraded_only() -> None:
    with pytest.raises(InvalidTransition, match="from down to healthy") as err:
        check_transition("api-gateway", "service", "down", "healthy")
    assert err.value.detail == {"current": "down", "allowed": ["degraded", "maintenance"]}


def test_same_state_is_a_noop_not_an_error() -> None:
    assert check_transition("acc-1", "account", "locked", "locked") is False


def test_a_state_of_the_other_machine_is_unknown() -> None:
    with pytest.raises(UnknownState) as err:
        check_transition("acc-1", "account", "active", "degraded")
    assert err.value.status_code == 422
    assert err.value.detail == {"valid": ["active", "suspended", "locked", "closed"]}


def test_every_type_has_a_machine() -> None:
    assert {t for t, m in MACHINES.items() if m is BUSINESS} == {"user", "account", "session"}
    assert {t for t, m in MACHINES.items() if m is SYSTEM} == {
        "service", "host", "database", "queue",
    }  # fmt: skip

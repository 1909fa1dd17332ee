"""The service registry (stages/ops/registry.py) and what services read of it at run time."""

from __future__ import annotations

from stages.common.hosts import SERVICE_HOSTS, HostPolicy
from stages.ops import registry


def test_services_answer_to_every_registry_name_and_alias() -> None:
    # Services cannot import the registry, so the compose host names they answer to are listed
    # in stages/common/hosts.py; a service added to the registry must be added there too, or a
    # peer calling it by its compose name gets 400 host_not_allowed.
    names = {svc.name for svc in registry.SERVICES} | set(registry.ALIASES)
    assert names == SERVICE_HOSTS, (
        f"add to SERVICE_HOSTS in stages/common/hosts.py: {sorted(names - SERVICE_HOSTS)}; "
        f"remove from it: {sorted(SERVICE_HOSTS - names)}"
    )
    policy = HostPolicy.build()
    for name in sorted(names):
        assert policy.allows_host(f"{name}:8004"), name
    assert not policy.allows_host("attacker.example:8004")


def test_aliases_name_registered_services() -> None:
    for alias, name in registry.ALIASES.items():
        assert name in registry.BY_NAME, alias
        assert alias not in registry.BY_NAME, alias

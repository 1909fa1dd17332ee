"""Which ``Host`` and ``Origin`` headers a service answers: the defence against DNS rebinding and
cross-site writes from a browser.

A page on another site can make the browser send requests to ``127.0.0.1:<port>``: a "simple"
cross-site POST (form, or ``fetch`` with ``text/plain``) needs no preflight, and a DNS-rebinding
page reads our answers under its own host name. Our answers are refused to both: the ``Host``
header must name this machine or a compose service (a rebinding page's requests carry the
attacker's name), and a mutating request from a browser must come from the service's own origin
(or one the operator allowed).

Pure functions only, shared by the HTTP plumbing (``service.py``) and the emulator (a WSGI app).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from stages.common.config import Settings

# Loopback names a browser never lets a foreign DNS answer stand for (RFC 6761 keeps
# "localhost" local; the others are addresses, not names).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# The compose service names (and their aliases), under which services reach each other on a
# compose network: the service registry's names (stages/ops/registry.py), listed here because
# services never import the tooling; tests/ops/test_registry.py holds the two lists equal.
SERVICE_HOSTS = frozenset(
    {
        "emulator",
        "localstack",
        "kinesis-consumer",
        "consumer",
        "state-manager",
        "pattern-generator",
        "log-consolidation",
        "ingestion-interface",
        "log-synthesis",
        "scenario-orchestrator",
        "etl",
        "detection",
        "dashboard",
    }
)
ANY = "*"


def split_host(header: str) -> str | None:
    """The host name of a ``Host`` header (port and IPv6 brackets removed, lower case), or None
    when it is not a plausible ``host[:port]``."""
    value = header.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    return name.rstrip(".") or None


WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})


def configured_names(settings: Settings) -> list[str]:
    """ALLOWED_HOSTS plus every address the settings bind or reach a service at (``STATE_HOST``
    = ``10.0.0.5`` makes ``10.0.0.5`` a name the services answer to)."""
    bound = [
        str(getattr(settings, name))
        for name in type(settings).model_fields
        if name.endswith("_host") and str(getattr(settings, name)) not in WILDCARD_BINDS
    ]
    return [*parse_list(settings.allowed_hosts), *bound]


def parse_list(raw: str | None) -> list[str]:
    """A comma-separated setting as a list of trimmed, non-empty items."""
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


@dataclass(frozen=True)
class HostPolicy:
    """The names a service answers to and the foreign origins allowed to write to it."""

    hosts: frozenset[str]
    origins: frozenset[str]
    # The emulator also answers subdomains (S3 virtual-hosted buckets: ``bucket.localhost``).
    subdomains: bool = False

    @classmethod
    def build(
        cls,
        extra_hosts: Iterable[str] = (),
        extra_origins: Iterable[str] = (),
        *,
        subdomains: bool = False,
    ) -> HostPolicy:
        names = set(LOOPBACK_HOSTS) | SERVICE_HOSTS
        for host in extra_hosts:
            names.add(host if host == ANY else (split_host(host) or host.lower()))
        origins = {normalise_origin(o) or o for o in extra_origins}
        return cls(frozenset(names), frozenset(origins), subdomains)

    def allows_host(self, header: str | None) -> bool:
        """Whether a request with this ``Host`` header may be answered. A request without one
        (HTTP/1.0) is not a browser's, so it is answered."""
        if header is None or ANY in self.hosts:
            return True
        name = split_host(header)
        if name is None:
            return False
        if name in self.hosts:
            return True
        return self.subdomains and any(name.endswith("." + host) for host in self.hosts)

    def allows_origin(self, origin: str, host_header: str | None) -> bool:
        """Whether a browser request from ``origin`` may write: the service's own origin (same
        scheme-less ``host:port`` as the request's Host) or one listed in ALLOWED_ORIGINS."""
        normal = normalise_origin(origin)
        if normal is None:
            return False
        if ANY in self.origins or normal in self.origins:
            return True
        own = (host_header or "").strip().lower()
        return bool(own) and normal.split("://", 1)[1] == own


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, default ports dropped; None for ``null`` and for
    anything that is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")

"""HTTP clients for calling the other services, with the timeouts the data path needs."""

from __future__ import annotations

import httpx

from stages.common.config import Settings

# Peers are on the same host: a second to connect is generous; a call that takes longer than its
# read timeout is treated as failed by the caller (and retried, spooled or reported).
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=1.0)


def headers(settings: Settings) -> dict[str, str]:
    """The control token, so one service may call another's mutating endpoints."""
    return {"Authorization": f"Bearer {settings.control_token}"} if settings.control_token else {}


def service_client(
    settings: Settings, prefix: str, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT
) -> httpx.Client:
    """A pooled client for the service whose settings are ``<prefix>_host`` / ``<prefix>_port``."""
    return httpx.Client(
        base_url=settings.service_url(prefix), timeout=timeout, headers=headers(settings)
    )


def async_service_client(
    settings: Settings, prefix: str, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.service_url(prefix), timeout=timeout, headers=headers(settings)
    )

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient


def wait_until(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_for_execution(client: TestClient, execution_id: str, timeout: float = 10.0) -> Any:
    def finished() -> Any:
        body = client.get(f"/api/executions/{execution_id}").json()
        return body if body["status"] != "running" else None

    return wait_until(finished, timeout)

"""Every service's /docs renders its operations with no network beyond loopback: Swagger UI's
JS and CSS come from the package, not a CDN."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect

from stages.ops import registry
from tests.ops.support import FleetRun, private_fleet
from tests.support.browser import open_page, save_screenshot

TIMEOUT_MS = 30_000
# The FastAPI services (the emulator is moto's server and has no /docs).
DOCUMENTED = [svc.name for svc in registry.SERVICES if svc.name != registry.EMULATOR]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:
    run = private_fleet(tmp_path_factory.mktemp("docs-offline"))
    started = run.cli("start", timeout=240)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield run
    finally:
        run.stop_all()


def _title_and_operation_count(base: str) -> tuple[str, int]:
    schema = httpx.get(f"{base}/openapi.json", timeout=10).json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    count = sum(1 for item in schema["paths"].values() for method in item if method in methods)
    return schema["info"]["title"], count


@pytest.mark.parametrize("service", DOCUMENTED)
def test_docs_render_offline(browser: Browser, fleet: FleetRun, service: str) -> None:
    base = fleet.url(service)
    title, expected = _title_and_operation_count(base)
    assert expected > 0
    blocked: list[str] = []

    def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with open_page(browser) as (page, errors):
        page.route("**/*", loopback_only)
        page.goto(f"{base}/docs")
        operations = page.locator("#swagger-ui .opblock")
        expect(operations.first).to_be_visible(timeout=TIMEOUT_MS)
        expect(operations).to_have_count(expected, timeout=TIMEOUT_MS)
        expect(page.locator("#swagger-ui .info .title")).to_contain_text(title)
        save_screenshot(page, f"docs-{service}")
        assert blocked == []
        assert errors.all() == []

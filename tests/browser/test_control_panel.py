"""The orchestrator's control panel in a real headless Chromium, against a real orchestrator
process (``python -m stages.orchestrator``); stub Log Synthesis and State Manager peers answer
it and count what they were asked for."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.orchestrator.stubs import Peers, start_peers
from tests.support.browser import PageErrors, open_page, save_screenshot
from tests.support.processes import Process, base_env, free_port, start_service

TIMEOUT_MS = 15_000
PLAYWRIGHT_DEFAULT_MS = 5_000
TOKEN = "panel-s3cret"
XSS = '<img src=x onerror="window.__xss=1">'
# Chromium logs every 4xx answer to fetch() as a console error; those the test provokes on
# purpose are expected, anything else is not.
EXPECTED_HTTP_ERROR = re.compile(r"Failed to load resource: .* status of (401|409|422)")


@dataclass
class Orchestrator:
    url: str
    peers: Peers


def start_orchestrator(tmp: Path, peers: Peers, **env: str) -> tuple[Process, str]:
    port = free_port()
    child_env = base_env(
        "http://127.0.0.1:1",
        DATA_DIR=str(tmp / "data"),
        ORCHESTRATOR_PORT=str(port),
        SYNTHESIS_PORT=str(peers.port),
        STATE_PORT=str(peers.port),
        INGESTION_PORT=str(peers.port),
    )
    child_env.pop("CONTROL_TOKEN", None)
    child_env.update(env)
    return start_service("orchestrator", child_env, tmp, port, f"orchestrator-{port}")


@pytest.fixture(autouse=True)
def patient_assertions() -> Iterator[None]:
    # Other test runs share the 2 cores: give expect() as long as page actions get.
    expect.set_options(timeout=TIMEOUT_MS)
    yield
    expect.set_options(timeout=PLAYWRIGHT_DEFAULT_MS)


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    peers, server = start_peers()
    yield peers
    server.stop()


@pytest.fixture(scope="module")
def orchestrator(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
    proc, url = start_orchestrator(tmp_path_factory.mktemp("orchestrator"), peers)
    try:
        yield Orchestrator(url, peers)
    finally:
        proc.stop()


@pytest.fixture
def panel(browser: Browser, orchestrator: Orchestrator) -> Iterator[tuple[Page, PageErrors]]:
    with open_page(browser) as (page, errors):
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(orchestrator.url + "/")
        expect(page.locator("#scenario-count")).to_have_text(re.compile(r"^\d+ scenarios$"))
        yield page, errors


def unexpected(errors: PageErrors) -> list[str]:
    return [e for e in errors.all() if not EXPECTED_HTTP_ERROR.search(e)]


def stat(page: Page, name: str) -> float:
    return float(page.locator(f'#live-stats [data-stat="{name}"]').inner_text())


def api_total(orchestrator: Orchestrator, **params: str) -> int:
    return httpx.get(f"{orchestrator.url}/api/scenarios", params=params).json()["total"]


def test_panel_loads_without_errors(
    panel: tuple[Page, PageErrors], orchestrator: Orchestrator
) -> None:
    page, errors = panel
    total = api_total(orchestrator)
    expect(page.locator("#scenario-count")).to_have_text(f"{total} scenarios")
    expect(page.locator("#scenario-list tbody tr.scenario")).to_have_count(20)
    expect(page.locator("#rate-chart canvas")).to_have_count(1)
    expect(page.locator("#live-stats dd").first).to_have_text("stopped")
    expect(page.locator("button[data-anomaly]")).to_have_count(8)
    expect(page.locator("#poll-status")).to_have_text(re.compile("^Updated"))
    save_screenshot(page, "control-panel")
    assert errors.all() == []


def test_catalogue_search_filters_pages_and_definitions(
    panel: tuple[Page, PageErrors], orchestrator: Orchestrator
) -> None:
    page, errors = panel
    count = page.locator("#scenario-count")
    page.fill("#scenario-search", "payment")
    expect(count).to_have_text(f"{api_total(orchestrator, q='payment')} scenarios")
    page.select_option("#scenario-category", "database")
    narrowed = api_total(orchestrator, q="payment", category="database")
    expect(count).to_have_text(f"{narrowed} scenarios")
    page.fill("#scenario-search", "")
    page.select_option("#scenario-severity", "critical")
    expected = api_total(orchestrator, category="database", severity="critical")
    expect(count).to_have_text(f"{expected} scenario{'' if expected == 1 else 's'}")
    rows = page.locator("#scenario-list tbody tr.scenario")
    expect(rows).to_have_count(min(expected, 20))
    for severity in rows.locator("td:nth-child(3)").all_inner_texts():
        assert severity == "critical"

    page.select_option("#scenario-category", "")
    page.select_option("#scenario-severity", "")
    expect(count).to_have_text(f"{api_total(orchestrator)} scenarios")
    expect(page.locator("#scenario-page")).to_have_text(re.compile(r"^page 1 of \d+$"))
    first_id = rows.first.get_attribute("data-scenario")
    page.click("#scenario-next")
    expect(page.locator("#scenario-page")).to_have_text(re.compile(r"^page 2 of"))
    expect(rows.first).not_to_have_attribute("data-scenario", first_id or "")

    row = rows.first
    scenario_id = row.get_attribute("data-scenario")
    row.locator("button.definition-toggle").click()
    definition = page.locator("pre.definition")
    expect(definition).to_contain_text(f'"id": "{scenario_id}"')
    shown = json.loads(definition.inner_text())
    assert shown == httpx.get(f"{orchestrator.url}/api/scenarios/{scenario_id}").json()
    row.locator("button.definition-toggle").click()
    expect(definition).to_have_count(0)
    assert errors.all() == []


def test_continuous_generation_triggers_and_executions(
    panel: tuple[Page, PageErrors], orchestrator: Orchestrator
) -> None:
    page, errors = panel
    page.fill("#interval_seconds", "0.2")
    page.fill("#logs_per_interval", "10")
    page.fill("#duration_seconds", "120")
    page.fill("#anomaly_rate", "0")
    page.click("#continuous-start")
    expect(page.locator("#messages .message.ok").first).to_contain_text(
        "Continuous generation started: 50.0 records/s"
    )
    expect(page.locator("#live-stats dd").first).to_have_text("running")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-stat=\"measured-rate\"]')?.textContent) > 0"
    )
    page.click("#continuous-start")
    expect(page.locator("#messages .message.error").first).to_contain_text(
        "HTTP 409 — a continuous generator is already running"
    )
    produced = stat(page, "records-produced")
    page.wait_for_function(
        "n => Number(document.querySelector('[data-stat=\"records-produced\"]').textContent) > n",
        arg=produced,
    )

    page.click('button[data-anomaly="cpu_spike"]')
    expect(page.locator("#messages .message.ok").first).to_contain_text("cpu_spike window opened")
    expect(page.locator('#active-anomalies tr[data-anomaly-type="cpu_spike"]')).to_have_count(1)
    expect(page.locator('#ground-truth tr[data-anomaly-type="cpu_spike"]')).to_have_count(1)
    expect(page.locator("#rate-chart")).to_have_attribute("data-windows", "1")
    page.wait_for_function(
        "() => Number(document.querySelector('#rate-chart').dataset.points) >= 2"
    )
    save_screenshot(page, "control-panel-generating")

    page.click("#continuous-stop")
    expect(page.locator("#messages .message.ok").first).to_contain_text("stopped after")
    expect(page.locator("#live-stats dd").first).to_have_text("stopped")
    stats = httpx.get(f"{orchestrator.url}/api/continuous/stats").json()
    assert stats["running"] is False and stats["records_produced"] > 0
    expect(page.locator('#live-stats [data-stat="records-produced"]')).to_have_text(
        str(stats["records_produced"])
    )

    page.fill("#execute-rate", "5")
    page.fill("#execute-duration", "30")
    page.fill("#scenario-search", "memory_leak")
    row = page.locator("#scenario-list tbody tr.scenario").first
    expect(row).to_have_attribute("data-scenario", re.compile("^memory_leak--"))
    scenario_id = row.get_attribute("data-scenario")
    row.locator("button.start").click()
    expect(page.locator("#messages .message.ok").first).to_contain_text(f"of {scenario_id} started")
    running = page.locator("#executions tr.status-running", has_text=str(scenario_id))
    expect(running).to_have_count(1)
    running.locator("button.stop").click()
    expect(page.locator("#messages .message.ok .text").first).to_have_text(
        re.compile(r"^Execution \S+ stopped after \d+ records$")
    )
    expect(running).to_have_count(0)
    assert unexpected(errors) == []


def test_server_rejections_are_shown_as_text(
    panel: tuple[Page, PageErrors], orchestrator: Orchestrator
) -> None:
    page, errors = panel
    page.fill("#interval_seconds", "0")
    page.click("#continuous-start")
    error = page.locator("#messages .message.error").first
    expect(error).to_contain_text("HTTP 422")
    expect(error).to_contain_text("body.interval_seconds: Input should be greater than or equal")

    page.select_option("#trigger-type", "disk_full")
    page.fill("#trigger-target", XSS)
    page.click("#trigger-submit")
    expect(error).to_contain_text(f"disk_full has no scenario targeting '{XSS}'")
    expect(error).to_contain_text("valid: ")
    assert page.locator("#messages img").count() == 0
    assert page.evaluate("window.__xss") is None

    page.fill("#trigger-target", "")
    page.fill("#trigger-intensity", "101")
    page.click("#trigger-submit")
    expect(error).to_contain_text("body.intensity: Input should be less than or equal to 100")
    assert httpx.get(f"{orchestrator.url}/api/continuous/stats").json()["running"] is False
    assert not [w for w in httpx.get(f"{orchestrator.url}/api/ground-truth").json()["items"]
                if w["anomaly_type"] == "disk_full"]  # fmt: skip
    assert errors.console and unexpected(errors) == []


def test_strings_from_peers_are_shown_as_text(
    panel: tuple[Page, PageErrors], orchestrator: Orchestrator
) -> None:
    page, errors = panel
    account = f"acc-{XSS}"
    saved = dict(orchestrator.peers.entities)
    # The State Manager's only account now has a hostile id; auth_failure locks "an account".
    orchestrator.peers.entities = {k: v for k, v in saved.items() if v["type"] != "account"} | {
        account: {"id": account, "type": "account", "state": "active", "attributes": {}}
    }
    try:
        page.select_option("#trigger-type", "auth_failure")
        page.fill("#trigger-target", "")
        page.click("#trigger-submit")
        row = page.locator('#active-anomalies tr[data-anomaly-type="auth_failure"]')
        expect(row.locator("td").nth(3)).to_have_text(account)
        assert page.locator("#active-anomalies img").count() == 0
        assert page.evaluate("window.__xss") is None
    finally:
        orchestrator.peers.entities = saved
        for execution in httpx.get(f"{orchestrator.url}/api/executions").json()["items"]:
            httpx.post(f"{orchestrator.url}/api/executions/{execution['id']}/stop")
    assert errors.all() == []


def test_control_token_is_asked_for_and_sent(
    browser: Browser, peers: Peers, tmp_path: Path
) -> None:
    proc, url = start_orchestrator(tmp_path, peers, CONTROL_TOKEN=TOKEN)
    try:
        with open_page(browser) as (page, errors):
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url + "/")
            expect(page.locator("#control-token")).to_have_attribute(
                "placeholder", "required by this service"
            )
            page.click('button[data-anomaly="disk_full"]')
            error = page.locator("#messages .message.error").first
            expect(error).to_contain_text("HTTP 401")
            expect(error).to_contain_text("control token")

            page.fill("#control-token", TOKEN)
            page.click("#token-save")
            expect(page.locator("#token-state")).to_have_text("token set for this tab")
            page.click('button[data-anomaly="disk_full"]')
            expect(page.locator("#messages .message.ok").first).to_contain_text(
                "disk_full window opened"
            )
            expect(
                page.locator('#active-anomalies tr[data-anomaly-type="disk_full"]')
            ).to_have_count(1)
            page.reload()
            expect(page.locator("#token-state")).to_have_text("token set for this tab")
            assert unexpected(errors) == []
    finally:
        proc.stop()

"""The control panel's page, its static files and its rate-history endpoint (TestClient with stub
peers); the page's behaviour in a browser is in tests/browser/test_control_panel.py."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stages.common.config import get_settings
from stages.common.vocabulary import INFRASTRUCTURE_TYPES, SEED_TYPES
from stages.orchestrator.panel import STATIC_DIR
from stages.orchestrator.rate_history import RateHistory
from tests.orchestrator.helpers import wait_until
from tests.orchestrator.stubs import Peers
from tests.support.pages import PageAssets


class PageParser(PageAssets):
    """Collects what the page loads and what it offers."""

    def __init__(self) -> None:
        super().__init__()
        self.anomaly_buttons: list[str] = []
        self.trigger_options: list[str] = []
        self._in_select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        super().handle_starttag(tag, attrs)
        attr = dict(attrs)
        if tag == "button" and attr.get("data-anomaly"):
            self.anomaly_buttons.append(str(attr["data-anomaly"]))
        elif tag == "select":
            self._in_select = attr.get("id")
        elif tag == "option" and self._in_select == "trigger-type":
            self.trigger_options.append(str(attr["value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._in_select = None


def parse_page(client: TestClient) -> PageParser:
    page = client.get("/")
    assert page.status_code == 200
    parser = PageParser()
    parser.feed(page.text)
    return parser


def test_page_is_served_with_a_strict_csp_and_no_inline_code(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    parsed = parse_page(client)
    assert parsed.scripts and None not in parsed.scripts, "an inline <script> would be blocked"
    assert parsed.inline_styles == 0
    assert "<title>Scenario Orchestrator" in page.text


def test_page_has_the_controls_other_tests_drive_by_id(client: TestClient) -> None:
    parsed = parse_page(client)
    expected = {
        "continuous-form", "interval_seconds", "logs_per_interval", "duration_seconds",
        "anomaly_rate", "continuous-start", "continuous-stop", "trigger-form", "live-stats",
        "active-anomalies", "executions", "rate-chart", "control-token", "scenario-search",
        "scenario-category", "scenario-severity", "scenario-list",
    }  # fmt: skip
    assert expected <= parsed.ids, expected - parsed.ids


def test_one_click_buttons_and_trigger_form_offer_every_type(client: TestClient) -> None:
    parsed = parse_page(client)
    assert parsed.anomaly_buttons == list(SEED_TYPES) and len(SEED_TYPES) == 8
    supported = client.get("/api/scenarios/categories").json()["anomaly_types"]
    assert parsed.trigger_options == supported
    assert set(SEED_TYPES) | set(INFRASTRUCTURE_TYPES) <= set(parsed.trigger_options)


def test_every_asset_the_page_loads_is_served(client: TestClient) -> None:
    parsed = parse_page(client)
    assets = [*(s for s in parsed.scripts if s), *parsed.stylesheets]
    assert "/static/orchestrator/panel.js" in assets
    assert "/static/common/vendor/uplot/uPlot.iife.min.js" in assets
    for asset in assets:
        resp = client.get(asset)
        assert resp.status_code == 200, asset
        kind = "javascript" if asset.endswith(".js") else "css"
        assert kind in resp.headers["content-type"], asset


def test_static_files_do_not_leave_their_directory(client: TestClient) -> None:
    for path in ("/static/orchestrator/../panel.py", "/static/orchestrator/%2e%2e/panel.py"):
        assert client.get(path).status_code == 404
    assert client.get("/static/orchestrator/nothing.js").status_code == 404


def test_page_script_never_writes_html() -> None:
    script = (STATIC_DIR / "panel.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CONTROL_TOKEN", "s3cret")
    get_settings.cache_clear()
    yield "s3cret"
    get_settings.cache_clear()


def test_page_says_no_token_is_needed_by_default(client: TestClient) -> None:
    assert "not required by this service" in client.get("/").text


def test_page_with_a_control_token_configured(client: TestClient, token: str) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "required by this service" in page.text
    assert "not required" not in page.text
    assert client.get("/api/panel/rate").status_code == 200


@pytest.mark.parametrize("seconds", ["9", "901", "-1", "ten"])
def test_rate_history_range_is_bounded(client: TestClient, seconds: str) -> None:
    resp = client.get(f"/api/panel/rate?seconds={seconds}")
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["location"] == "query.seconds"


def test_rate_history_adds_up_to_what_was_produced(client: TestClient, peers: Peers) -> None:
    # The sampler's first reading is the baseline; wait for it before producing anything.
    wait_until(lambda: client.get("/api/panel/rate").json()["points"], timeout=30)
    body = {"interval_seconds": 0.1, "logs_per_interval": 10, "duration_seconds": 2}
    assert client.post("/api/continuous/start", json=body).status_code == 200
    trigger = {"anomaly_type": "cpu_spike", "intensity": 90, "duration_seconds": 60}
    assert client.post("/api/anomaly/trigger", json=trigger).status_code == 200
    wait_until(lambda: not client.get("/api/continuous/stats").json()["running"], timeout=10)
    ended = time.time()
    produced = client.get("/api/continuous/stats").json()["records_produced"]
    assert produced == peers.produced() == 200

    def settled() -> dict[str, Any] | None:
        history = client.get("/api/panel/rate").json()
        # a sample taken after the run ended has counted its last records
        return history if history["points"][-1]["at"] > ended else None

    history = wait_until(settled, timeout=30)  # a sample a second, or later when loaded
    points = history["points"]
    counted = sum(
        later["continuous"] * (later["at"] - earlier["at"])
        for earlier, later in itertools.pairwise(points)
    )
    assert counted == pytest.approx(produced, abs=1)
    assert max(p["total"] for p in points) > 50
    assert all(p["execution"] == 0 and p["total"] == p["continuous"] for p in points)
    assert [w["anomaly_type"] for w in history["windows"]] == ["cpu_spike"]


def test_rate_history_turns_counter_deltas_into_rates() -> None:
    now = [1000.0]
    totals = {"continuous": 0.0, "execution": 0.0}
    history = RateHistory(totals=lambda: dict(totals), clock=lambda: now[0], max_samples=3)
    assert history.sample() is None  # baseline only
    for step in range(5):
        now[0] += 2
        totals["continuous"] += 20 * (step + 1)
        totals["execution"] += 4
        history.sample()
    samples = history.recent(60)
    assert [s.at for s in samples] == [1006.0, 1008.0, 1010.0]  # bounded: the 3 newest
    assert [s.continuous for s in samples] == [30.0, 40.0, 50.0]
    assert [s.total for s in samples] == [32.0, 42.0, 52.0]
    assert [s.at for s in history.recent(3)] == [1008.0, 1010.0]

"""The Pattern Generator's HTTP API, through FastAPI's TestClient."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from stages.common.config import Settings
from stages.patterns import Composition, evaluate
from stages.patterns.app import create_app

RANGE = {"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T01:00:00Z", "step_seconds": 60}
COMPOSITION = {
    "baseline": 35,
    "components": [
        {"kind": "daily_seasonality", "amplitude": 10},
        {"kind": "gaussian_noise", "sigma": 2},
        {"kind": "gaussian_spike", "start": 1_767_571_800, "end": 1_767_573_000, "magnitude": 50},
    ],
    "low": 0,
    "high": 100,
}


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(Settings()))


def test_lists_every_kind_with_parameters(client: TestClient) -> None:
    body = client.get("/api/patterns").json()
    kinds = {p["kind"]: p for p in body["patterns"]}
    assert len(kinds) == 15
    ramp = {param["name"]: param for param in kinds["ramp"]["parameters"]}
    assert ramp["start"]["required"] and ramp["magnitude"]["default"] == 1.0
    sawtooth = {param["name"]: param for param in kinds["sawtooth"]["parameters"]}
    assert sawtooth["period_seconds"]["bounds"]["ge"] > 0
    assert all(p["description"] for p in body["patterns"])


def test_evaluate_returns_the_library_values(client: TestClient) -> None:
    resp = client.post(
        "/api/patterns/evaluate", json={**RANGE, "seed": 7, "composition": COMPOSITION}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert len(body["timestamps"]) == 61
    assert body["timestamps"][:2] == ["2026-01-05T00:00:00Z", "2026-01-05T00:01:00Z"]
    expected = evaluate(
        Composition.model_validate(COMPOSITION),
        [1_767_571_200 + 60 * i for i in range(61)],
        seed=7,
    )
    assert body["values"] == pytest.approx(expected)
    assert max(body["values"]) > 70  # night-time level 25 + the spike of 50


def test_preview_one_kind(client: TestClient) -> None:
    resp = client.post(
        "/api/patterns/preview/step",
        json={**RANGE, "baseline": 5, "params": {"start": 1_767_571_200 + 600, "magnitude": 3}},
    )
    assert resp.status_code == 200
    assert resp.json()["values"][:12] == [5] * 10 + [8, 8]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({**RANGE, "step_seconds": 0, "composition": COMPOSITION}, "body.step_seconds"),
        ({**RANGE, "start": "2026-01-05T00:00:00", "composition": COMPOSITION}, "body.start"),
        ({**RANGE, "end": "2026-01-04T00:00:00Z", "composition": COMPOSITION}, "body"),
        ({**RANGE, "composition": COMPOSITION, "colour": "red"}, "body.colour"),
        (
            {**RANGE, "composition": {"baseline": 1, "components": [{"kind": "nope"}]}},
            "body.composition.components.0",
        ),
        (
            {
                **RANGE,
                "composition": {
                    "baseline": 1,
                    "components": [{"kind": "ramp", "start": 5, "end": 5}],
                },
            },
            "body.composition.components.0.ramp",
        ),
    ],
)
def test_bad_requests_are_422_with_the_location(
    client: TestClient, body: dict[str, object], location: str
) -> None:
    resp = client.post("/api/patterns/evaluate", json=body)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["location"] == location


def test_too_many_points_is_a_422_that_says_the_limit(client: TestClient) -> None:
    body = {**RANGE, "end": "2026-01-07T00:00:00Z", "step_seconds": 1, "composition": COMPOSITION}
    resp = client.post("/api/patterns/evaluate", json=body)
    assert resp.status_code == 422
    assert resp.json()["detail"] == {"points": 172_801, "max_points": 100_000}
    assert "status" not in resp.json()


def test_preview_refuses_bad_params_and_unknown_kinds(client: TestClient) -> None:
    bad = client.post(
        "/api/patterns/preview/sawtooth",
        json={**RANGE, "params": {"start": 0, "end": 10, "period_seconds": -1}},
    )
    assert bad.status_code == 422
    assert bad.json()["message"] == "invalid parameters for sawtooth"
    assert bad.json()["detail"][0]["location"] == "params.period_seconds"
    assert client.post("/api/patterns/preview/wobble", json=RANGE).status_code == 422


def test_status_page_counts_points(client: TestClient) -> None:
    client.post("/api/patterns/evaluate", json={**RANGE, "composition": COMPOSITION})
    page = client.get("/").text
    assert "points computed" in page and "range evaluations" in page
    assert client.get("/health").json()["status"] == "healthy"

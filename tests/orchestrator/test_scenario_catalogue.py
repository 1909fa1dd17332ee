"""The scenario catalogue: size, validity of every definition, and the list/filter API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stages.common import estate
from stages.common.vocabulary import (
    ARCHETYPES,
    BY_TYPE,
    INFRASTRUCTURE_TYPES,
    LOG_TYPES,
    METRICS,
    SEED_TYPES,
)
from stages.orchestrator.scenario_catalogue import ScenarioCatalogue

ESTATE_NAMES = {
    "service": set(estate.SERVICE_NAMES),
    "database": set(estate.DATABASES),
    "queue": set(estate.QUEUES),
    "host": set(estate.HOSTS),
}


def test_catalogue_has_200_plus_scenarios_covering_every_archetype() -> None:
    catalogue = ScenarioCatalogue()
    assert len(catalogue) >= 200
    assert set(catalogue.anomaly_types()) == {a.anomaly_type for a in ARCHETYPES}
    assert set(SEED_TYPES) | set(INFRASTRUCTURE_TYPES) <= set(catalogue.anomaly_types())
    assert len(catalogue.for_type("cpu_spike")) == len(estate.SERVICES)
    assert len(catalogue.for_type("database_slow")) == len(estate.DATABASES)
    assert len(catalogue.for_type("disk_full")) == len(estate.HOSTS)


def test_every_scenario_is_a_valid_definition() -> None:
    for scenario in ScenarioCatalogue().all():
        archetype = BY_TYPE[scenario.anomaly_type]
        assert scenario.id == f"{scenario.anomaly_type}--{scenario.target.name}"
        assert scenario.category == archetype.category
        assert scenario.severity in ("low", "medium", "high", "critical")
        assert scenario.signals and scenario.log_types, scenario.id
        for signal in scenario.signals:
            spec = METRICS[signal.metric]
            assert signal.baseline == spec.baseline
            assert spec.low <= signal.peak <= spec.high
            assert signal.peak != signal.baseline, f"{scenario.id} {signal.metric} does not move"
        for effect in scenario.log_types:
            assert LOG_TYPES[effect.log_type] == effect.category
        assert all(s in estate.SERVICE_NAMES for s in scenario.target.services), scenario.id
        if scenario.target.kind in ESTATE_NAMES:
            assert scenario.target.name in ESTATE_NAMES[scenario.target.kind]
        if archetype.state_effect is None:
            assert scenario.state_effect is None
        else:
            assert scenario.state_effect is not None
            assert (scenario.state_effect.entity_type, scenario.state_effect.to_state) == (
                archetype.state_effect
            )
        assert 0 <= scenario.default_intensity <= 100
        assert scenario.default_duration_seconds > 0


def test_scenarios_of_one_archetype_differ_by_where_the_data_comes_from() -> None:
    scenarios = ScenarioCatalogue().for_type("cpu_spike")
    assert len({s.target.services[0] for s in scenarios}) == len(scenarios)
    payment = ScenarioCatalogue().get("cpu_spike--payment-service")
    assert payment is not None and payment.target.services[0] == "payment-service"
    assert payment.state_effect is not None and payment.state_effect.entity == "payment-service"


def test_list_filters_and_pagination(client: TestClient) -> None:
    everything = client.get("/api/scenarios", params={"limit": 500}).json()
    assert everything["total"] >= 200 and len(everything["items"]) == everything["total"]

    db = client.get("/api/scenarios", params={"category": "database", "limit": 500}).json()
    assert db["total"] > 0 and all(s["category"] == "database" for s in db["items"])

    critical = client.get("/api/scenarios", params={"severity": "critical", "limit": 500}).json()
    assert critical["total"] > 0 and all(s["severity"] == "critical" for s in critical["items"])

    found = client.get("/api/scenarios", params={"q": "PAYMENTS-DB", "limit": 500}).json()
    assert found["total"] > 0
    assert all(
        "payments-db" in s["id"] or "payments-db" in s["description"] for s in found["items"]
    )

    page = client.get("/api/scenarios", params={"limit": 5, "offset": 5}).json()
    assert [s["id"] for s in page["items"]] == [s["id"] for s in everything["items"][5:10]]


def test_bad_filters_are_422_not_empty_lists(client: TestClient) -> None:
    bad = client.get("/api/scenarios", params={"category": "weather"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["location"] == "query.category"
    assert client.get("/api/scenarios", params={"severity": "extreme"}).status_code == 422
    assert client.get("/api/scenarios", params={"limit": 0}).status_code == 422
    assert client.get("/api/scenarios", params={"limit": 501}).status_code == 422


def test_get_one_and_404(client: TestClient) -> None:
    one = client.get("/api/scenarios/database_slow--payments-db")
    assert one.status_code == 200
    body = one.json()
    assert body["target"] == {
        "kind": "database", "name": "payments-db", "services": ["payment-service"],
    }  # fmt: skip
    assert body["signals"][0]["metric"] == "db.query.duration"
    assert body["state_effect"]["to_state"] == "degraded"
    missing = client.get("/api/scenarios/nope--nowhere")
    assert missing.status_code == 404
    assert "nope--nowhere" in missing.json()["message"]


def test_categories_count_every_scenario(client: TestClient) -> None:
    body = client.get("/api/scenarios/categories").json()
    total = client.get("/api/scenarios", params={"limit": 1}).json()["total"]
    assert sum(body["categories"].values()) == total
    assert sum(body["severities"].values()) == total
    assert "cpu_spike" in body["anomaly_types"]

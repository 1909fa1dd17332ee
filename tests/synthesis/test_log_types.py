"""Every log type: registered, valid against Record, and anomalous in exactly its listed fields."""

from __future__ import annotations

import random
from typing import Any

import pytest

from stages.common import estate
from stages.common.records import Record
from stages.common.vocabulary import BY_TYPE, LOG_TYPES
from stages.synthesis.generator import ANOMALY_TYPES_BY_LOG_TYPE, build_log_attributes
from stages.synthesis.log_types import REGISTRY, Ctx
from tests.synthesis.helpers import anomalous_logs, anomaly, make

SEEDS = range(40)


def _variant(name: str, seed: int, anomaly_type: str, anomalous: bool) -> dict[str, object]:
    spec = REGISTRY[name]
    service = spec.services[0]
    ctx = Ctx(
        rng=random.Random(seed),
        service=service,
        host=estate.BY_NAME[service].hosts[0],
        account_id="acc-000007",
        user_id="usr-000007",
        anomaly_type=anomaly_type,
        intensity=80,
    )
    return build_log_attributes(spec, ctx, anomalous)[2]


def test_registry_matches_catalogue() -> None:
    assert set(REGISTRY) == set(LOG_TYPES)
    assert {name: spec.category for name, spec in REGISTRY.items()} == LOG_TYPES
    for spec in REGISTRY.values():
        assert set(spec.services) <= set(estate.SERVICE_NAMES), spec.name
        assert spec.anomalous_fields, f"{spec.name} has no anomalous variant"


@pytest.mark.parametrize("name", sorted(LOG_TYPES))
def test_anomalous_variant_differs_in_exactly_the_listed_fields(name: str) -> None:
    listed = set(REGISTRY[name].anomalous_fields)
    changed: set[str] = set()
    for anomaly_type in ANOMALY_TYPES_BY_LOG_TYPE[name]:
        for seed in SEEDS:
            normal = _variant(name, seed, anomaly_type, anomalous=False)
            odd = _variant(name, seed, anomaly_type, anomalous=True)
            assert normal.keys() == odd.keys()
            diff = {key for key in normal if normal[key] != odd[key]}
            assert diff <= listed, f"{name}/{anomaly_type} changed unlisted {diff - listed}"
            changed |= diff
    assert changed == listed, f"{name}: listed but never changed: {listed - changed}"


@pytest.mark.parametrize("name", sorted(LOG_TYPES))
def test_every_type_normal_and_anomalous_validates_as_record(name: str) -> None:
    spec = REGISTRY[name]
    normal = make(count=20, kinds=["log"], log_types=[name]).records
    anomaly_type = ANOMALY_TYPES_BY_LOG_TYPE[name][0]
    odd = make(
        count=20, kinds=["log"], log_types=[name], anomaly=anomaly(anomaly_type), anomalous_share=1
    ).records
    assert {r["log_type"] for r in normal} == {name}
    assert {r["log_type"] for r in odd} == {name}
    for record in normal + odd:
        parsed = Record.model_validate(record)
        assert parsed.category == spec.category
        assert parsed.source == "log-synthesis"
        assert parsed.host in estate.BY_NAME[parsed.service].hosts
        assert set(parsed.attributes) == set(spec.fields)
        assert parsed.message
    assert all(not r["is_anomaly"] and r["anomaly_score"] < 20 for r in normal)
    assert all(r["is_anomaly"] and r["anomaly_type"] == anomaly_type for r in odd)
    assert all(r["scenario_id"] == f"test-{anomaly_type}" and r["anomaly_score"] > 50 for r in odd)


def test_auth_failure_is_one_ip_against_one_account() -> None:
    records = [r for r in anomalous_logs("auth_failure") if r["log_type"] == "authentication_log"]
    assert len(records) > 20
    assert len({r["attributes"]["client.ip"] for r in records}) == 1
    assert len({r["attributes"]["account.id"] for r in records}) == 1
    assert {r["attributes"]["outcome"] for r in records} == {"failure"}
    assert {r["service"] for r in records} == {"auth-service"}


def test_auth_failure_targets_the_given_account() -> None:
    records = anomalous_logs("auth_failure", target_entity="acc-424242")
    auth = [r for r in records if r["log_type"] == "authentication_log"]
    assert {r["attributes"]["account.id"] for r in auth} == {"acc-424242"}


def test_payment_fraud_is_high_amounts_from_one_account() -> None:
    normal = make(count=300, kinds=["log"], log_types=["payment_transaction_log"]).records
    fraud = [
        r for r in anomalous_logs("payment_fraud") if r["log_type"] == "payment_transaction_log"
    ]
    assert len({r["attributes"]["account.id"] for r in fraud}) == 1
    assert min(r["attributes"]["payment.amount"] for r in fraud) >= 2000
    assert max(r["attributes"]["payment.amount"] for r in normal) < 200


def test_api_errors_are_5xx() -> None:
    gateway = [r for r in anomalous_logs("api_errors") if r["log_type"] == "api_gateway_log"]
    assert gateway and all(500 <= r["attributes"]["http.status_code"] < 600 for r in gateway)
    assert all(r["level"] == "ERROR" for r in gateway)


def test_cpu_spike_raises_cpu_and_slows_requests() -> None:
    records = anomalous_logs("cpu_spike", count=300)
    cpu = [
        r["attributes"]["cpu.percent"] for r in records if r["log_type"] == "system_resource_log"
    ]
    slow = [
        r["attributes"]["duration_ms"] for r in records if r["log_type"] == "service_request_log"
    ]
    normal = make(count=300, kinds=["log"], log_types=["service_request_log"]).records
    assert cpu and min(cpu) > 80
    assert slow and min(slow) > max(r["attributes"]["duration_ms"] for r in normal)


def _mean_score(records: list[dict[str, Any]]) -> float:
    return sum(r["anomaly_score"] for r in records) / len(records)


def test_anomaly_score_grows_with_intensity() -> None:
    low = anomalous_logs("cpu_spike", intensity=10)
    high = anomalous_logs("cpu_spike", intensity=95)
    assert _mean_score(high) > _mean_score(low) + 30
    assert all(0 <= r["anomaly_score"] <= 100 for r in low + high)


def test_every_archetype_produces_anomalous_logs_of_its_types() -> None:
    for anomaly_type, archetype in BY_TYPE.items():
        records = anomalous_logs(anomaly_type, count=60)
        assert records, anomaly_type
        assert {r["log_type"] for r in records} <= set(archetype.log_types)

"""Strings no store may keep, sent to every API that stores something.

Lone surrogates (JSON ``"\\ud800"``: not UTF-8, so a stored one fails every later read), NUL,
other control characters and 1 MB strings, as values, as keys and nested, into entity
attributes and transition reasons (State Manager), canonical records (Ingestion Interface, Log
Consolidation), OTLP logs, and the orchestrator's fields. Each is refused with a 4xx that names
the field, and every store still answers its lists afterwards. A generic pass puts the same
strings in every string property of every mutating route's JSON body: never a 5xx.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from stages.common.config import Settings
from stages.common.records import format_timestamp
from stages.state.app import create_app as create_state_app
from stages.state.store import EntityStore, NewEntity
from tests.fuzz.support import AUTH, MUTATING_METHODS, Operation, Target, operations

UNSTORABLE = {
    "high surrogate": "before\ud800after",
    "low surrogate": "\udfff",
    "NUL": "a\x00b",
    "bell": "ring\x07",
    "escape": "\x1b[31mred",
    "form feed": "page\x0cbreak",  # inside: a leading or trailing one is trimmed
}
HUGE = "x" * (1024 * 1024)
HOSTILE = {**UNSTORABLE, "1 MB": HUGE}
# Every list or read route that must keep answering 200 once the strings were tried.
READS = {
    "state-manager": ["/api/entities?type=user", "/api/entities", "/api/stats"],
    "ingestion-interface": ["/api/metrics"],
    "log-consolidation": ["/api/logs/recent", "/api/stats"],
    "scenario-orchestrator": ["/api/executions", "/api/continuous/stats", "/api/scenarios"],
}


def _json(value: Any) -> bytes:
    # json.dumps escapes a lone surrogate as \ud800, as a client in any language would send it.
    return json.dumps(value).encode()


def _post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    headers = {**AUTH, "Content-Type": "application/json"}
    return client.post(path, content=_json(body), headers=headers)


def _refused(resp: httpx.Response, what: str, field: str | None = None) -> None:
    """A 4xx; ``field`` named in the answer unless the body was refused whole (a lone surrogate
    is not even JSON to orjson, the parser of the data path; 1 MB is over the body limit)."""
    assert 400 <= resp.status_code < 500, f"{what}: {resp.status_code} {resp.text[:300]}"
    body = resp.json()
    text = resp.text.lower()
    whole = body.get("error") == "payload_too_large" or "not json" in text or "invalid json" in text
    if field is not None and not whole:
        assert field in orjson.dumps(body).decode(), f"{what}: the answer does not name {field}"


def _rejected(resp: httpx.Response, what: str, field: str) -> None:
    """The Ingestion Interface answers a batch record by record: 200 with the record among the
    ``rejected`` (naming the field), or a 4xx for a body refused whole."""
    if resp.status_code != 200:
        _refused(resp, what, field)
        return
    body = resp.json()
    assert body["accepted"] == 0, f"{what}: accepted {resp.text[:300]}"
    assert len(body["rejected"]) == 1, f"{what}: {resp.text[:300]}"
    assert field in orjson.dumps(body["rejected"]).decode(), f"{what}: {resp.text[:300]}"


def _reads_answer(targets: dict[str, Target]) -> None:
    for name, paths in READS.items():
        with targets[name].client() as client:
            for path in paths:
                resp = client.get(path)
                assert resp.status_code == 200, f"{name} {path}: {resp.status_code} {resp.text}"


def _record(**fields: Any) -> dict[str, Any]:
    return {
        "timestamp": format_timestamp(datetime.now(UTC)),
        "kind": "log",
        "service": "api-gateway",
        "level": "INFO",
        "message": "unstorable strings",
        **fields,
    }


@pytest.mark.parametrize("label", HOSTILE)
def test_entity_attributes_and_reasons_are_refused(label: str, targets: dict[str, Target]) -> None:
    text = HOSTILE[label]
    with targets["state-manager"].client() as client:
        resp = _post(client, "/api/entities", {"type": "user", "id": "usr-strings"})
        assert resp.status_code in (201, 409), resp.text
        before = client.get("/api/stats").json()["total"]
        for attributes in ({"note": text}, {text: 1}, {"deep": {"list": [1, text]}}):
            resp = _post(client, "/api/entities", {"type": "user", "attributes": attributes})
            _refused(resp, f"attributes {label}", "attributes")
        resp = _post(
            client,
            "/api/entities/usr-strings/transition",
            {"to": "suspended", "reason": text},
        )
        _refused(resp, f"reason {label}", "reason")
        assert client.get("/api/entities/usr-strings").json()["state"] == "active"
        assert client.get("/api/entities/usr-strings/history").status_code == 200
        assert client.get("/api/stats").json()["total"] == before
    _reads_answer(targets)


def test_a_stored_lone_surrogate_reads_back_replaced(tmp_path: Path) -> None:
    """A row written before writes were checked (or by another tool) does not break the lists
    of its type: the lone surrogate reads back as U+FFFD."""
    store = EntityStore(tmp_path / "state.db")
    try:
        store.create(NewEntity("usr-old", "user", {"note": "a\ud800b", "ok": "ü"}))
        store.create(NewEntity("usr-fine", "user", {"note": "fine"}))
        settings = Settings(data_dir=tmp_path, aws_endpoint_url="http://127.0.0.1:9")
    finally:
        store.close()
    with TestClient(create_state_app(settings)) as client:
        resp = client.get("/api/entities", params={"type": "user", "limit": 1000})
        assert resp.status_code == 200, resp.text
        ids = {item["id"] for item in resp.json()["items"]}
        assert {"usr-old", "usr-fine"} <= ids
        old = client.get("/api/entities/usr-old")
        assert old.status_code == 200, old.text
        assert old.json()["attributes"] == {"note": "a\ufffdb", "ok": "ü"}
        assert client.get("/api/entities/usr-fine").json()["attributes"] == {"note": "fine"}


@pytest.mark.parametrize("label", UNSTORABLE)
def test_canonical_records_with_unstorable_text_are_refused(
    label: str, targets: dict[str, Target]
) -> None:
    text = UNSTORABLE[label]
    ingestion, consolidation = targets["ingestion-interface"], targets["log-consolidation"]
    variants = {
        "message": _record(message=text),
        "host": _record(host=text),
        "attributes": _record(attributes={"user": text}),
        "attributes key": _record(attributes={f"k{text}": "v"}),
    }
    with ingestion.client() as ingest, consolidation.client() as consolidate:
        accepted = ingest.get("/api/metrics").json()["counters"]["accepted"]
        stored = consolidate.get("/api/stats").json()["total"]
        for where, record in variants.items():
            field = where.split()[0]
            _rejected(_post(ingest, "/api/ingest", record), f"ingest {where}", field)
            batch = {"records": [record]}
            _rejected(_post(ingest, "/api/ingest/batch", batch), f"batch {where}", field)
            _refused(_post(consolidate, "/api/logs/batch", batch), f"consolidation {where}", field)
        assert ingest.get("/api/metrics").json()["counters"]["accepted"] == accepted
        assert consolidate.get("/api/stats").json()["total"] == stored
    _reads_answer(targets)


def _otlp(body: str, attribute: str = "v") -> dict[str, Any]:
    record = {
        "timeUnixNano": str(int(datetime.now(UTC).timestamp() * 1e9)),
        "body": {"stringValue": body},
        "attributes": [{"key": "k", "value": {"stringValue": attribute}}],
    }
    return {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}


@pytest.mark.parametrize("label", UNSTORABLE)
def test_otlp_logs_with_unstorable_text_are_not_stored(
    label: str, targets: dict[str, Target]
) -> None:
    """Refused (4xx) or rejected in ``partial_success``: either way nothing is stored."""
    text = UNSTORABLE[label]
    with targets["log-consolidation"].client() as client:
        stored = client.get("/api/stats").json()["total"]
        in_resource = _otlp("fine") | {
            "resourceLogs": [
                {
                    "resource": {"attributes": [{"key": "host", "value": {"stringValue": text}}]},
                    "scopeLogs": _otlp("fine")["resourceLogs"][0]["scopeLogs"],
                }
            ]
        }
        in_scope = _otlp("fine")
        in_scope["resourceLogs"][0]["scopeLogs"][0]["scope"] = {"name": text}
        for body in (_otlp(text), _otlp("fine", attribute=text), in_resource, in_scope):
            resp = _post(client, "/v1/logs", body)
            assert resp.status_code < 500, resp.text
            if resp.status_code == 200:
                rejected = resp.json()["partialSuccess"]["rejectedLogRecords"]
                assert int(rejected) == 1, resp.text
        assert client.get("/api/stats").json()["total"] == stored
    _reads_answer(targets)


@pytest.mark.parametrize("label", HOSTILE)
def test_orchestrator_fields_are_refused(label: str, targets: dict[str, Target]) -> None:
    text = HOSTILE[label]
    with targets["scenario-orchestrator"].client() as client:
        count = client.get("/api/executions").json()["total"]
        _refused(_post(client, "/api/anomaly/trigger", {"anomaly_type": text}), "anomaly_type")
        resp = _post(client, "/api/anomaly/trigger", {"anomaly_type": "cpu_spike", "target": text})
        _refused(resp, f"target {label}", "target")
        resp = _post(client, "/api/continuous/start", {
            "interval_seconds": 1, "logs_per_interval": 1, "services": [text],
        })  # fmt: skip
        _refused(resp, f"services {label}", "services")
        assert client.get("/api/executions").json()["total"] == count
    _reads_answer(targets)


def _string_properties(op: Operation) -> list[str]:
    schema = op.json_body_schema() or {}
    names = []
    for name, prop in schema.get("properties", {}).items():
        prop = op.resolve(prop)
        options = [op.resolve(p) for p in prop.get("anyOf", [prop])]
        if any(p.get("type") == "string" for p in options):
            names.append(name)
    return names


@pytest.mark.parametrize("label", HOSTILE)
def test_every_string_property_of_every_body_is_never_a_5xx(
    label: str, targets: dict[str, Target]
) -> None:
    text = HOSTILE[label]
    for name, target in targets.items():
        with target.client() as client:
            for op in operations(target):
                if op.method not in MUTATING_METHODS:
                    continue
                if not op.takes_body:
                    continue
                # Every string property at once, and the string as an unknown key (which the
                # validation error then names).
                bodies = [dict.fromkeys(_string_properties(op), text), {text: 1}]
                for body in bodies:
                    headers = {**AUTH, "Content-Type": "application/json"}
                    content = _json(body)
                    resp = client.request(op.method, op.url(), content=content, headers=headers)
                    retryable = resp.status_code == 503 and "retry-after" in resp.headers
                    assert resp.status_code < 500 or retryable, (
                        f"{name} {op.label} {label}: {resp.status_code} {resp.text[:300]}"
                    )
    _reads_answer(targets)

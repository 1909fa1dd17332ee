"""Abuse the way every service is called: without the control token, with oversized bodies, with
counts and strings past their declared bounds. Operations come from each service's own OpenAPI
document, so a new endpoint is covered the day it is added."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stages.common.config import Settings
from stages.synthesis.app import create_app as create_synthesis_app
from tests.fuzz.support import (
    AUTH,
    MUTATING_METHODS,
    TOKEN,
    Operation,
    Target,
    http_services,
    operations,
    serve_in_process,
)
from tests.support.processes import free_port

SERVICES = [svc.name for svc in http_services()]

# POSTs that change nothing: they take a body only because their input does not fit a URL.
# They stay open without CONTROL_TOKEN, like the GETs; the test checks that they are read-only
# in the sense that matters here (a request without the token is answered, not refused).
READ_ONLY_POSTS: dict[tuple[str, str], str] = {
    ("state-manager", "POST /api/entities/bulk-state"): "the states of up to 1000 ids (a lookup)",
    ("pattern-generator", "POST /api/patterns/evaluate"): "evaluates a composition (pure maths)",
    ("pattern-generator", "POST /api/patterns/preview/{kind}"): "evaluates one kind (pure maths)",
}

OVER_DATA_PATH_LIMIT = 10 * 1024 * 1024 + 1  # the largest limit any service has (ingestion's)


def _mutating(target: Target) -> list[Operation]:
    return [op for op in operations(target) if op.method in MUTATING_METHODS]


def _send(
    client: httpx.Client, op: Operation, headers: dict[str, str], **kwargs: Any
) -> httpx.Response:
    if op.takes_body and "content" not in kwargs and "json" not in kwargs:
        kwargs["json"] = {}
    return client.request(op.method, op.url(), headers=headers, **kwargs)


def _not_a_server_error(resp: httpx.Response, what: str) -> None:
    retryable = resp.status_code == 503 and "retry-after" in resp.headers
    assert resp.status_code < 500 or retryable, f"{what}: {resp.status_code} {resp.text[:300]}"


@pytest.mark.parametrize("name", SERVICES)
def test_control_token_guards_every_mutating_endpoint(
    name: str, targets: dict[str, Target]
) -> None:
    target = targets[name]
    with target.client() as client:
        for op in _mutating(target):
            exempt = (name, op.label) in READ_ONLY_POSTS
            missing = _send(client, op, {})
            wrong = _send(client, op, {"Authorization": "Bearer not-the-token"})
            right = _send(client, op, AUTH)
            if exempt:
                assert missing.status_code != 401, f"{op.label} is listed as open but wants a token"
            else:
                for resp in (missing, wrong):
                    assert resp.status_code == 401, f"{op.label}: {resp.status_code} {resp.text}"
                    assert resp.json()["error"] == "unauthorized"
            assert right.status_code != 401, f"{op.label} refuses the right token"
            _not_a_server_error(right, op.label)


def test_the_read_only_exemptions_name_real_endpoints(targets: dict[str, Target]) -> None:
    """A renamed endpoint must not leave a stale exemption behind (or lose its check)."""
    existing = {(name, op.label) for name in SERVICES for op in _mutating(targets[name])}
    assert set(READ_ONLY_POSTS) <= existing


def _counter(client: httpx.Client, name: str) -> int:
    return int(client.get("/api/metrics").json()["counters"][name])


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_peers_send_the_control_token_on_the_data_path(
    targets: dict[str, Target], tmp_path: Path
) -> None:
    """With CONTROL_TOKEN set everywhere, synthesis -> ingestion -> Log Consolidation still
    delivers: each service sends the token to the next (stages/common/http.py)."""
    ingestion = targets["ingestion-interface"]
    settings = Settings(
        aws_endpoint_url=ingestion.emulator,
        data_dir=tmp_path,
        control_token=TOKEN,
        ingestion_port=ingestion.port,
        state_port=free_port(),  # optional for synthesis: ids are generated without it
    )
    url, stop = serve_in_process(create_synthesis_app(settings))
    try:
        with ingestion.client() as ingest, targets["log-consolidation"].client() as consolidation:
            accepted, delivered = (
                _counter(ingest, "accepted"),
                _counter(ingest, "consolidation_delivered"),
            )
            stored = consolidation.get("/api/stats").json()["total"]
            resp = httpx.post(
                f"{url}/api/synthesize",
                json={"count": 7, "kinds": ["log"], "forward": True, "return_records": False},
                headers=AUTH,
                timeout=60,
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["forwarded"] == 7
            assert _counter(ingest, "accepted") == accepted + 7
            assert _wait_for(lambda: _counter(ingest, "consolidation_delivered") >= delivered + 7)
            assert consolidation.get("/api/stats").json()["total"] == stored + 7
            assert _counter(ingest, "consolidation_failed") == 0
    finally:
        stop()


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


@pytest.mark.parametrize("name", SERVICES)
def test_oversized_bodies_are_refused_with_413(name: str, targets: dict[str, Target]) -> None:
    """Declared (Content-Length) and streamed (chunked) bodies over the limit, on every
    endpoint that takes a body: 413 with the JSON error body, never read whole."""
    target = targets[name]
    with target.client() as client:
        for op in operations(target):
            if not op.takes_body:
                continue
            headers = {**AUTH, "Content-Type": "application/json"}
            declared = _send(client, op, headers, content=b" " * OVER_DATA_PATH_LIMIT)
            streamed = _send(client, op, headers, content=_chunks(OVER_DATA_PATH_LIMIT))
            for how, resp in (("declared", declared), ("streamed", streamed)):
                assert resp.status_code == 413, f"{op.label} ({how}): {resp.status_code}"
                assert resp.json()["error"] == "payload_too_large"


def _bound_value(schema: dict[str, Any]) -> Any:
    """A value just past the schema's bound, or None when it declares none we can pass."""
    kind = schema.get("type")
    if kind in {"integer", "number"} and "maximum" in schema:
        return schema["maximum"] + 1
    if kind == "array" and "maxItems" in schema:
        return [None] * (schema["maxItems"] + 1)
    if kind == "string" and "maxLength" in schema:
        return "x" * (schema["maxLength"] + 1)
    return None


def _unbounded_count(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return (kind == "integer" and "maximum" not in schema) or (
        kind == "array" and "maxItems" not in schema
    )


def _options(op: Operation, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a schema (``int | None`` is an anyOf), each resolved."""
    schema = op.resolve(schema)
    return [op.resolve(option) for option in schema.get("anyOf", [schema])]


def _past_the_bound(op: Operation, schema: dict[str, Any]) -> Any:
    for option in _options(op, schema):
        value = _bound_value(option)
        if value is not None:
            return value
    return None


def _body_bounds(
    op: Operation, schema: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path to a body field, value past its bound), nested objects included."""
    for field, sub in schema.get("properties", {}).items():
        value = _past_the_bound(op, sub)
        if value is not None:
            yield (*path, field), value
        elif len(path) < 2:
            for option in _options(op, sub):
                yield from _body_bounds(op, option, (*path, field))


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for field in reversed(path):
        value = {field: value}
    return value


def _bounded_fields(op: Operation) -> Iterator[tuple[str, str, Any]]:
    """(location, field name, what to send) for query parameters and body fields with a bound."""
    for param in op.parameters("query"):
        value = _past_the_bound(op, param.get("schema", {}))
        if value is not None and not isinstance(value, list):
            yield "query", param["name"], {param["name"]: value}
    for path, value in _body_bounds(op, op.json_body_schema() or {}):
        yield "body", path[-1], _nested(path, value)


@pytest.mark.parametrize("name", SERVICES)
def test_counts_and_strings_past_their_bounds_are_422(
    name: str, targets: dict[str, Target]
) -> None:
    """Every declared maximum (counts, limits, list sizes, string lengths) is enforced: one past
    it is a 422 that names the field."""
    target = targets[name]
    checked = 0
    with target.client(headers=AUTH) as client:
        for op in operations(target):
            for location, field, sent in _bounded_fields(op):
                if location == "query":
                    resp = client.request(op.method, op.url(), params=sent)
                else:
                    resp = client.request(op.method, op.url(), json=sent)
                assert resp.status_code == 422, f"{op.label} {str(sent)[:60]}: {resp.text[:300]}"
                assert field in resp.text, f"{op.label}: the 422 does not name {field}"
                checked += 1
    print(f"{name}: {checked} bounds checked")


# Counts allowed without an upper bound in the schema, each with the reason (none today: the
# dashboard's viewer `lines`, once bounded only at run time, now declares its maximum).
UNBOUNDED_ALLOWED: dict[tuple[str, str, str], str] = {}


@pytest.mark.parametrize("name", SERVICES)
def test_every_count_declares_a_bound(name: str, targets: dict[str, Target]) -> None:
    missing = []
    for op in operations(targets[name]):
        params = [(p["name"], p.get("schema", {})) for p in op.parameters("query")]
        body = op.json_body_schema() or {}
        fields = list(body.get("properties", {}).items())
        for field, schema in params + fields:
            unbounded = any(_unbounded_count(option) for option in _options(op, schema))
            if unbounded and (name, op.label, field) not in UNBOUNDED_ALLOWED:
                missing.append(f"{op.label} {field}")
    assert not missing, f"counts without an upper bound: {missing}"


DEEP_JSON = b'{"x": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"


@pytest.mark.parametrize("name", SERVICES)
def test_deeply_nested_bodies_are_a_4xx(name: str, targets: dict[str, Target]) -> None:
    """JSON nested 5000 deep (small in bytes, deep for a recursive parser or encoder)."""
    target = targets[name]
    headers = {**AUTH, "Content-Type": "application/json"}
    with target.client() as client:
        for op in operations(target):
            if op.takes_body:
                resp = _send(client, op, headers, content=DEEP_JSON)
                assert 400 <= resp.status_code < 500, f"{op.label}: {resp.status_code}"

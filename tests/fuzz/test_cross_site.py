"""Cross-site writes and DNS rebinding, on every route of every service.

A foreign web page can send "simple" requests without a preflight (a form post, ``fetch`` with
``text/plain`` or ``no-cors``), and a DNS-rebinding page reaches 127.0.0.1 under its own host
name. Every mutating route must refuse a foreign ``Origin`` (403) and a body that is not JSON
(415); every route must refuse a foreign ``Host`` (400); requests from the service's own page and
from non-browser clients (no ``Origin``) keep working. Routes come from each service's OpenAPI
document, so a new route is covered the day it is added.
"""

from __future__ import annotations

from typing import Any

import boto3
import httpx
import pytest

from tests.fuzz.support import (
    AUTH,
    MUTATING_METHODS,
    Operation,
    Target,
    http_services,
    operations,
)

SERVICES = [svc.name for svc in http_services()]
FOREIGN_HOSTS = ["attacker.example", "attacker.example:8004", "127.0.0.1.attacker.example", "[::2]"]
FOREIGN_ORIGINS = [
    "http://attacker.example",
    "https://127.0.0.1.attacker.example",
    "http://localhost.attacker.example:8000",
    "null",
]
MULTIPART = b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n'
# (Content-Type, body) pairs a page may send cross-site without a preflight.
SIMPLE_BODIES = [
    ("text/plain", b'{"records": []}'),
    ("text/plain;charset=UTF-8", b"{}"),
    ("application/x-www-form-urlencoded", b"a=1"),
    ("multipart/form-data; boundary=x", MULTIPART),
]
GUARD_ERRORS = {"host_not_allowed", "forbidden", "unsupported_media_type"}


def _mutating(target: Target) -> list[Operation]:
    return [op for op in operations(target) if op.method in MUTATING_METHODS]


def _json_send(client: httpx.Client, op: Operation, headers: dict[str, str]) -> httpx.Response:
    kwargs: dict[str, Any] = {"json": {}} if op.takes_body else {}
    return client.request(op.method, op.url(), headers={**AUTH, **headers}, **kwargs)


def _error(resp: httpx.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


@pytest.mark.parametrize("name", SERVICES)
def test_a_foreign_host_is_refused_on_every_route(name: str, targets: dict[str, Target]) -> None:
    target = targets[name]
    with target.client() as client:
        routes = [op for op in operations(target)] + [
            Operation("GET", path, {}, {}) for path in ("/", "/health", "/metrics", "/openapi.json")
        ]
        for op in routes:
            for host in FOREIGN_HOSTS:
                resp = client.request(op.method, op.url(), headers={**AUTH, "Host": host})
                assert resp.status_code == 400, f"{op.label} Host {host}: {resp.status_code}"
                assert resp.json()["error"] == "host_not_allowed", resp.text
                assert "ALLOWED_HOSTS" in resp.json()["message"]


@pytest.mark.parametrize("name", SERVICES)
def test_local_and_compose_host_names_are_answered(name: str, targets: dict[str, Target]) -> None:
    target = targets[name]
    names = [
        f"127.0.0.1:{target.port}",
        f"localhost:{target.port}",
        f"[::1]:{target.port}",
        "localhost",
        f"{name}:{target.service.default_port}",  # how a compose peer calls it
        "LOCALHOST.",
    ]
    with target.client() as client:
        for host in names:
            resp = client.get("/openapi.json", headers={"Host": host})
            assert resp.status_code == 200, f"Host {host}: {resp.status_code} {resp.text[:200]}"


@pytest.mark.parametrize("name", SERVICES)
def test_a_foreign_origin_cannot_call_a_mutating_route(
    name: str, targets: dict[str, Target]
) -> None:
    target = targets[name]
    with target.client() as client:
        for op in _mutating(target):
            for origin in FOREIGN_ORIGINS:
                resp = _json_send(client, op, {"Origin": origin})
                assert resp.status_code == 403, f"{op.label} Origin {origin}: {resp.status_code}"
                assert resp.json()["error"] == "forbidden"
            # A page on another site that hides its Origin is still a cross-site fetch.
            hidden = _json_send(client, op, {"Sec-Fetch-Site": "cross-site"})
            assert hidden.status_code == 403, f"{op.label} cross-site: {hidden.status_code}"


@pytest.mark.parametrize("name", SERVICES)
def test_a_body_that_is_not_json_is_refused_on_every_mutating_route(
    name: str, targets: dict[str, Target]
) -> None:
    """Without an Origin (what curl sends) too: the type alone is refused, so a page in a
    browser that drops the Origin cannot get text/plain or a form parsed as JSON."""
    target = targets[name]
    with target.client() as client:
        for op in _mutating(target):
            for content_type, body in SIMPLE_BODIES:
                headers = {**AUTH, "Content-Type": content_type}
                resp = client.request(op.method, op.url(), headers=headers, content=body)
                assert resp.status_code == 415, f"{op.label} {content_type}: {resp.status_code}"
                assert resp.json()["error"] == "unsupported_media_type"
                assert "application/json" in resp.json()["message"]
            untyped = client.request(op.method, op.url(), headers=AUTH, content=b"{}")
            assert untyped.status_code == 415, f"{op.label} untyped body: {untyped.status_code}"


@pytest.mark.parametrize("name", SERVICES)
def test_own_page_and_non_browser_clients_still_get_through(
    name: str, targets: dict[str, Target]
) -> None:
    """Same-origin requests (Origin set by the browser, or ``null`` with Sec-Fetch-Site:
    same-origin under Referrer-Policy: no-referrer) and requests without an Origin are not
    refused by the guard; what they get is the route's own answer."""
    target = targets[name]
    own = f"http://127.0.0.1:{target.port}"
    variants = [
        {},
        {"Origin": own},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        {"Origin": f"http://localhost:{target.port}", "Host": f"localhost:{target.port}"},
    ]
    with target.client() as client:
        for op in _mutating(target):
            for headers in variants:
                resp = _json_send(client, op, headers)
                assert _error(resp) not in GUARD_ERRORS, f"{op.label} {headers}: {resp.text}"
                assert resp.status_code != 403, f"{op.label} {headers}: {resp.text}"
            if not op.takes_body:
                bare = client.request(op.method, op.url(), headers=AUTH)  # curl -X POST
                assert _error(bare) not in GUARD_ERRORS, f"{op.label} body-less: {bare.text}"


def test_a_cross_site_text_plain_batch_stores_nothing(targets: dict[str, Target]) -> None:
    """The simple request a foreign page would send: JSON as text/plain. Nothing is accepted."""
    ingestion = targets["ingestion-interface"]
    consolidation = targets["log-consolidation"]
    record = (
        b'{"timestamp": "2026-01-01T00:00:00Z", "kind": "log", "service": "api-gateway", '
        b'"level": "INFO", "message": "from a foreign page"}'
    )
    sends = [
        (ingestion, "/api/ingest", record),
        (ingestion, "/api/ingest/batch", b'{"records": [' + record + b"]}"),
        (consolidation, "/api/logs/batch", b'{"records": [' + record + b"]}"),
    ]
    with ingestion.client() as ingest, consolidation.client() as consolidate:
        accepted = ingest.get("/api/metrics").json()["counters"]["accepted"]
        stored = consolidate.get("/api/stats").json()["total"]
        for target, path, body in sends:
            headers = {**AUTH, "Content-Type": "text/plain", "Origin": "http://attacker.example"}
            resp = httpx.post(f"{target.url}{path}", content=body, headers=headers)
            assert resp.status_code == 403, f"{path}: {resp.status_code} {resp.text}"
            no_origin = {**AUTH, "Content-Type": "text/plain"}
            resp = httpx.post(f"{target.url}{path}", content=body, headers=no_origin)
            assert resp.status_code == 415, f"{path}: {resp.status_code} {resp.text}"
        assert ingest.get("/api/metrics").json()["counters"]["accepted"] == accepted
        assert consolidate.get("/api/stats").json()["total"] == stored


def test_a_cross_site_form_cannot_stop_generation(targets: dict[str, Target]) -> None:
    """The body-less stop routes, posted by a foreign page's form."""
    orchestrator = targets["scenario-orchestrator"]
    form = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": "http://attacker.example",
    }
    with orchestrator.client(headers=AUTH) as client:
        for path in ("/api/continuous/stop", "/api/executions/some-id/stop"):
            resp = client.post(path, content=b"", headers=form)
            assert resp.status_code == 403, f"{path}: {resp.status_code} {resp.text}"
            same_site_form = client.post(
                path, content=b"", headers={"Content-Type": form["Content-Type"]}
            )
            assert same_site_form.status_code == 415, f"{path}: {same_site_form.text}"


def test_otlp_protobuf_is_accepted_on_the_receiver_only(targets: dict[str, Target]) -> None:
    target = targets["log-consolidation"]
    protobuf = {**AUTH, "Content-Type": "application/x-protobuf"}
    with target.client() as client:
        assert client.post("/v1/logs", content=b"", headers=protobuf).status_code == 200
        resp = client.post("/api/logs/batch", content=b"", headers=protobuf)
        assert resp.status_code == 415, resp.text


def test_the_emulator_refuses_a_foreign_host_and_serves_boto3(targets: dict[str, Target]) -> None:
    endpoint = next(iter(targets.values())).emulator
    health = httpx.get(f"{endpoint}/_localstack/health", headers={"Host": "attacker.example"})
    assert health.status_code == 400
    assert health.json()["error"] == "host_not_allowed"
    listing = httpx.get(f"{endpoint}/", headers={"Host": "attacker.example:4566"})
    assert listing.status_code == 400
    port = endpoint.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"md-raw-logs.localhost:{port}", "localstack:4566"):
        resp = httpx.get(f"{endpoint}/_localstack/health", headers={"Host": host})
        assert resp.status_code == 200, f"{host}: {resp.status_code}"
    form = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": "http://attacker.example",
    }
    upload = httpx.post(f"{endpoint}/md-raw-logs", content=b"key=planted&x=1", headers=form)
    assert upload.status_code == 403, upload.text
    query = httpx.post(f"{endpoint}/", content=b"Action=ListQueues", headers=form)
    assert query.status_code == 403, query.text
    # A page's fetch() of a listing or an object would be readable if the emulator answered it
    # with CORS headers: a foreign Origin is refused on reads too, preflights included.
    foreign = {"Origin": "http://attacker.example"}
    read = httpx.get(f"{endpoint}/md-raw-logs?list-type=2", headers=foreign)
    assert read.status_code == 403, read.text
    assert "access-control-allow-origin" not in read.headers
    preflight = httpx.options(
        f"{endpoint}/md-raw-logs",
        headers={**foreign, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 403
    # Without an Origin (an SDK, curl) nothing carries CORS headers either.
    plain = httpx.get(f"{endpoint}/md-raw-logs?list-type=2")
    assert plain.status_code == 200
    assert not any(name.startswith("access-control-") for name in plain.headers)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    assert "md-raw-logs" in {b["Name"] for b in s3.list_buckets()["Buckets"]}

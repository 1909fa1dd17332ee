"""Hostile strings: path traversal where a string could become a file path or an S3 key, HTML/JS
wherever a string is stored or shown, and buckets/streams outside the configured set.

Strings are data: stored and returned exactly as sent (as JSON), never a path outside DATA_DIR,
never markup in a page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stages.common import aws
from stages.common.config import Settings
from stages.common.records import format_timestamp
from stages.common.vocabulary import LOG_TYPES
from tests.fuzz.support import AUTH, Operation, Target, http_services, operations
from tests.support.processes import ROOT

SERVICES = [svc.name for svc in http_services()]
MARK = "fuzz-escape"
TRAVERSALS = [
    f"../../{MARK}",
    f"../../../../../../etc/{MARK}",
    f"..%2f..%2f{MARK}",
    f"%2e%2e/%2e%2e/{MARK}",
    f"/tmp/{MARK}-absolute",
    f"{MARK}\x00.jsonl",
    f"..\\..\\{MARK}",
    f"....//....//{MARK}",
]
SCRIPT = "<script>alert('fuzz')</script>"
IMG = "<img src=x onerror=alert(1)>"
HTML_PAYLOADS = [SCRIPT, IMG, f'"><svg onload=alert(1)>{SCRIPT}']


def _record(**fields: Any) -> dict[str, Any]:
    return {
        "timestamp": format_timestamp(datetime.now(UTC)),
        "kind": "log",
        "service": "api-gateway",
        "level": "INFO",
        "message": "hostile strings",
        **fields,
    }


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _assert_nothing_escaped(root: Path, targets: dict[str, Target]) -> None:
    """No file named after a traversal anywhere under the run's root or at the absolute paths
    tried, and every file a service wrote lies inside its own DATA_DIR."""
    escaped = [p for p in root.rglob(f"*{MARK}*")]
    escaped += [p for p in (Path(f"/tmp/{MARK}-absolute"), Path(f"/etc/{MARK}")) if p.exists()]
    assert not escaped, f"files written from hostile strings: {escaped}"
    for target in targets.values():
        data = target.data_dir.resolve()
        for path in _files(target.data_dir):
            assert path.resolve().is_relative_to(data), f"{path} is outside {data}"


# --- path traversal -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_traversal_in_path_parameters_is_a_4xx(name: str, targets: dict[str, Target]) -> None:
    target = targets[name]
    with target.client(headers=AUTH) as client:
        for op in operations(target):
            if not op.parameters("path"):
                continue
            for payload in TRAVERSALS:
                kwargs: dict[str, Any] = {"json": {}} if op.takes_body else {}
                resp = client.request(op.method, op.url(payload), **kwargs)
                assert 400 <= resp.status_code < 500, (
                    f"{op.label} with {payload!r}: {resp.status_code} {resp.text[:200]}"
                )


def test_traversal_in_record_fields_never_leaves_the_data_dir(
    targets: dict[str, Target], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """log_type and category name the category files; service, host and the rest name nothing,
    but are sent hostile too. Records with path-like log types are refused, the others stored as
    data; either way only the catalogue's own folders and files appear."""
    ingestion, consolidation = targets["ingestion-interface"], targets["log-consolidation"]
    refused = [_record(log_type=p) for p in TRAVERSALS] + [_record(category=p) for p in TRAVERSALS]
    # A NUL is refused in any text field (tests/fuzz/test_store_strings.py), path-like or not.
    storable = [p for p in TRAVERSALS if "\x00" not in p]
    refused += [_record(host=p) for p in TRAVERSALS if p not in storable]
    stored = [
        _record(host=p, source=p, scenario_id=p, anomaly_type=p, is_anomaly=True, message=p)
        | {"attributes": {p: p}}
        for p in storable
    ]
    with ingestion.client(headers=AUTH) as client:
        resp = client.post("/api/ingest/batch", json={"records": refused + stored})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["accepted"] == len(stored)
        assert sorted(r["index"] for r in body["rejected"]) == list(range(len(refused)))
    with consolidation.client(headers=AUTH) as client:
        resp = client.post("/api/logs/batch", json={"records": stored})
        assert resp.status_code == 200, resp.text
        otlp = {
            "resourceLogs": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": p}}
                            for p in TRAVERSALS[:1]
                        ]
                    },
                    "scopeLogs": [{"logRecords": [{"body": {"stringValue": p}}]}],
                }
                for p in TRAVERSALS
            ]
        }
        resp = client.post("/v1/logs", json=otlp)
        assert resp.status_code == 200, resp.text

    categories = ingestion.data_dir / "categories"
    folders = {*LOG_TYPES.values(), "log", "metric", "apm", "anomaly"}
    names = {f"{log_type}.jsonl" for log_type in LOG_TYPES} | {"other.jsonl"}
    for path in _files(categories):
        folder, name = path.relative_to(categories).parts
        assert folder in folders and name in names, f"unexpected category file {path}"
    lines = (categories / "log" / "other.jsonl").read_bytes().splitlines()
    hosts = [orjson.loads(line).get("host") for line in lines]
    assert all(p in hosts for p in storable)
    _assert_nothing_escaped(tmp_path_factory.getbasetemp(), targets)


@pytest.mark.parametrize("payload", TRAVERSALS)
def test_dashboard_keys_and_prefixes_stay_in_the_bucket(
    payload: str, targets: dict[str, Target]
) -> None:
    """A key or prefix is an S3 key, never a local path: a traversal is a missing object (404)
    or an empty listing, never a file of the host."""
    with targets["dashboard"].client() as client:
        for key in (payload, "../../../../../../etc/passwd", "/etc/passwd"):
            resp = client.get("/api/buckets/md-raw-logs/object", params={"key": key})
            assert resp.status_code in {404, 422}, resp.text
            assert "root:" not in resp.text
        listing = client.get("/api/buckets/md-raw-logs/list", params={"prefix": payload})
        assert listing.status_code in {200, 422}, listing.text
        if listing.status_code == 200:
            page = listing.json()
            assert not page.get("objects") and not page.get("folders"), page


# --- buckets and streams outside the configured set ---------------------------------------------


@pytest.fixture(scope="module")
def foreign_bucket_and_stream(targets: dict[str, Target]) -> tuple[str, str]:
    """A bucket and a stream that exist on the emulator but are not the pipeline's."""
    settings = Settings(aws_endpoint_url=targets["dashboard"].emulator)
    s3, kinesis = aws.client("s3", settings), aws.client("kinesis", settings)
    s3.create_bucket(Bucket="fuzz-foreign-bucket")
    s3.put_object(Bucket="fuzz-foreign-bucket", Key="secret.jsonl", Body=b'{"secret": 1}\n')
    kinesis.create_stream(StreamName="fuzz-foreign-stream", ShardCount=1)
    return "fuzz-foreign-bucket", "fuzz-foreign-stream"


def test_dashboard_refuses_buckets_and_streams_it_is_not_configured_for(
    targets: dict[str, Target], foreign_bucket_and_stream: tuple[str, str]
) -> None:
    bucket, stream = foreign_bucket_and_stream
    with targets["dashboard"].client() as client:
        for name in (bucket, "md-raw-logs-x", "..", "../md-raw-logs"):
            for path, params in (
                (f"/api/buckets/{name}", {}),
                (f"/api/buckets/{name}/list", {}),
                (f"/api/buckets/{name}/partitions", {}),
                (f"/api/buckets/{name}/object", {"key": "secret.jsonl"}),
            ):
                resp = client.get(path, params=params)
                assert resp.status_code in {404, 422}, f"{path}: {resp.status_code} {resp.text}"
                assert "secret" not in resp.text.replace("secret.jsonl", "")
        for name in (stream, "stage01-logs-stream-x"):
            resp = client.get(f"/api/streams/{name}")
            assert resp.status_code == 404, resp.text
        configured = client.get("/api/config").json()
        assert bucket not in configured["buckets"] and stream not in configured["streams"]


# --- HTML and JavaScript ------------------------------------------------------------------------


def test_html_in_record_fields_is_stored_and_returned_as_data(targets: dict[str, Target]) -> None:
    ingestion, consolidation = targets["ingestion-interface"], targets["log-consolidation"]
    records = [
        _record(
            message=f"html-{i} {p}",
            host=p[:256],
            source=p[:256],
            scenario_id=p[:128],
            anomaly_type=p[:64],
            attributes={p: p},
        )
        for i, p in enumerate(HTML_PAYLOADS)
    ]
    with ingestion.client(headers=AUTH) as client:
        resp = client.post("/api/ingest/batch", json={"records": records})
    assert resp.status_code == 200 and resp.json()["accepted"] == len(records), resp.text
    stored = [
        orjson.loads(line)
        for line in (ingestion.data_dir / "categories" / "log" / "other.jsonl")
        .read_bytes()
        .splitlines()
    ]
    for record in records:
        assert any(
            s["message"] == record["message"] and s["host"] == record["host"] for s in stored
        )
    with consolidation.client(headers=AUTH) as client:
        assert client.post("/api/logs/batch", json={"records": records}).status_code == 200
        found = client.get("/api/logs", params={"q": "html-", "limit": 50})
    assert found.headers["content-type"].startswith("application/json")
    returned = {entry["body"]: entry for entry in found.json()["logs"]}
    for record in records:
        entry = returned[record["message"]]
        assert entry["host"] == record["host"]
        assert record["host"] in entry["attributes"].values()


def test_html_in_entity_attributes_is_returned_as_sent(targets: dict[str, Target]) -> None:
    with targets["state-manager"].client(headers=AUTH) as client:
        created = client.post(
            "/api/entities", json={"type": "user", "attributes": {p: p for p in HTML_PAYLOADS}}
        )
        assert created.status_code == 201, created.text
        fetched = client.get(f"/api/entities/{created.json()['id']}")
    assert fetched.headers["content-type"].startswith("application/json")
    assert fetched.json()["attributes"] == {p: p for p in HTML_PAYLOADS}


def _string_fields(op: Operation) -> list[str]:
    """Top-level body fields that take a string (alone or among other types)."""
    fields = []
    for field, schema in ((op.json_body_schema() or {}).get("properties", {})).items():
        options = [op.resolve(s) for s in op.resolve(schema).get("anyOf", [schema])]
        if any(option.get("type") == "string" for option in options):
            fields.append(field)
    return fields


@pytest.mark.parametrize("name", SERVICES)
def test_html_reflected_in_errors_is_json_never_a_page(
    name: str, targets: dict[str, Target]
) -> None:
    """Markup in every path and query parameter and every string field of a body. Answers
    (errors quoting what was sent, or the stored value) are JSON, so a browser never renders the
    markup, and never a server error."""
    target = targets[name]
    with target.client(headers=AUTH) as client:
        for op in operations(target):
            for payload in HTML_PAYLOADS:
                params = {p["name"]: payload for p in op.parameters("query")}
                body = {field: payload for field in _string_fields(op)} or {"x": payload}
                kwargs: dict[str, Any] = {"json": body} if op.takes_body else {}
                resp = client.request(op.method, op.url(payload), params=params, **kwargs)
                kind = resp.headers.get("content-type", "")
                assert not kind.startswith("text/html"), f"{op.label} answered HTML"
                assert resp.status_code < 500 or resp.status_code == 503, (
                    f"{op.label}: {resp.status_code} {resp.text[:200]}"
                )


@pytest.mark.parametrize("name", SERVICES)
def test_pages_never_carry_markup_from_data(name: str, targets: dict[str, Target]) -> None:
    """Every HTML page (the status page or the service's own page at /), after hostile strings
    went through the services: no payload markup in the raw HTML, and the strict CSP."""
    resp = httpx.get(f"{targets[name].url}/", timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    for payload in (SCRIPT, IMG, "onerror=alert", "alert('fuzz')"):
        assert payload not in html, f"{name}'s page carries {payload!r}"
    assert "script-src 'self'" in resp.headers["content-security-policy"]


# Writing markup into the DOM is how data would become HTML; pages build nodes (createElement,
# textContent) instead. Clearing a node (innerHTML = "") writes no data and is allowed.
HTML_SINKS = re.compile(
    r"\.innerHTML\s*[+]?=(?!\s*[\"'`]{2}\s*;)|\.outerHTML\s*=|insertAdjacentHTML|document\.write"
    r"|\beval\(|new Function\("
)


def test_page_scripts_never_write_markup() -> None:
    scripts = [
        path
        for path in (ROOT / "stages").glob("*/static/**/*.js")
        if "vendor" not in path.relative_to(ROOT).parts
    ]
    assert scripts, "no page scripts found"
    sinks = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in scripts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if HTML_SINKS.search(line)
    ]
    assert not sinks, "scripts writing markup:\n" + "\n".join(sinks)

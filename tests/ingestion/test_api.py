"""The Ingestion Interface's own API (TestClient): validation, bounds, category files, spool,
Kinesis routing against a real emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stages.common import aws
from stages.common.config import Settings
from stages.ingestion.app import create_app
from tests.ingestion.helpers import read_stream
from tests.support.processes import free_port
from tests.support.records import apm_record, log_record, metric_record, mixed_batch

JSON = {"Content-Type": "application/json"}

# Nothing listens here: Kinesis is "unreachable" and every accepted record goes to the spool.
CLOSED = f"http://127.0.0.1:{free_port()}"


def _settings(tmp_path: Path, endpoint: str = CLOSED, **extra: Any) -> Settings:
    return Settings(
        aws_endpoint_url=endpoint,
        data_dir=tmp_path / "data",
        consolidation_port=free_port(),  # no consolidation: its failures are counted, not ours
        ingest_kinesis_timeout_seconds=5,
        **extra,
    )


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(tmp_path)), raise_server_exceptions=False) as client:
        yield client


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fully_invalid_batch_is_422_with_reasons_per_record(
    offline: TestClient, tmp_path: Path
) -> None:
    resp = offline.post(
        "/api/ingest/batch",
        json={"records": [{"kind": "log"}, "not an object", log_record(1, level="LOUD")]},
    )
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "validation_error"
    assert "none of the 3 records" in body["message"]
    assert [d["index"] for d in body["detail"]] == [0, 1, 2]
    assert any(p.startswith("timestamp:") for p in body["detail"][0]["problems"])
    assert body["detail"][1]["problems"] == ["a record must be a JSON object"]
    assert any(p.startswith("level:") for p in body["detail"][2]["problems"])
    assert not (tmp_path / "data" / "categories").exists()
    assert offline.get("/api/metrics").json()["counters"]["rejected"] == 3


def test_partial_batch_accepts_the_valid_records_only(offline: TestClient, tmp_path: Path) -> None:
    resp = offline.post(
        "/api/ingest/batch",
        json={"records": [log_record(1), {"kind": "metric"}, log_record(2, span_id="XYZ")]},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["accepted"] == 1 and body["spooled"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert "span_id" in body["rejected"][1]["problems"][0]
    written = _lines(tmp_path / "data/categories/application/api_gateway_log.jsonl")
    assert [r["event_id"] for r in written] == ["log-0000000001"]
    spooled = [
        json.loads(line)
        for path in (tmp_path / "data/spool").glob("seg-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [r["event_id"] for r in spooled] == ["log-0000000001"]


def test_every_record_is_answered_with_its_status_and_event_id(
    offline: TestClient, tmp_path: Path
) -> None:
    """A record sent without an event_id gets one, and the answer names it: the id a retry must
    carry for the consumer to recognise a copy."""
    anonymous = log_record(1)
    del anonymous["event_id"]
    resp = offline.post(
        "/api/ingest/batch",
        json={
            "records": [
                anonymous,
                {"kind": "metric"},
                metric_record(2),
                log_record(3, event_id="e" * 100),
                log_record(4, event_id="short"),
            ]
        },
    )
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert [(r["index"], r["status"]) for r in results] == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "accepted"),
        (3, "rejected"),
        (4, "rejected"),
    ]
    # an invalid record's own id comes back only when it could be one
    assert [r["event_id"] for r in results[3:]] == [None, "short"]
    assigned = results[0]["event_id"]
    assert isinstance(assigned, str) and len(assigned) >= 8
    assert results[1]["event_id"] is None and "timestamp" in results[1]["error"]
    assert results[2]["event_id"] == "metric-0000000002"
    assert resp.json()["retry"] == 0
    spooled = [
        json.loads(line)["event_id"]
        for segment in sorted((tmp_path / "data" / "spool").glob("seg-*.jsonl"))
        for line in segment.read_text().splitlines()
    ]
    assert spooled == [assigned, "metric-0000000002"]
    one = offline.post("/api/ingest", json=anonymous).json()["results"]
    assert one[0]["status"] == "accepted" and one[0]["event_id"] not in (None, assigned)


def test_single_record_endpoint(offline: TestClient) -> None:
    assert offline.post("/api/ingest", json=log_record(5)).json()["accepted"] == 1
    bad = offline.post("/api/ingest", json={"kind": "apm"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["index"] == 0
    assert offline.post("/api/ingest", content=b"{oops", headers=JSON).status_code == 422


def test_bounds_body_size_and_record_count(offline: TestClient) -> None:
    huge = offline.post(
        "/api/ingest/batch",
        content=b"x" * (10 * 1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert "limit" in huge.json()["message"]
    too_many = offline.post("/api/ingest/batch", json={"records": [log_record(1)] * 5001})
    assert too_many.status_code == 422
    assert offline.post("/api/ingest/batch", json={"records": []}).status_code == 422
    extra = offline.post("/api/ingest/batch", json={"records": [log_record(1)], "more": 1})
    assert extra.status_code == 422
    assert offline.post("/api/ingest/batch", content=b"[1,2", headers=JSON).status_code == 422


def test_path_traversal_never_leaves_the_category_tree(offline: TestClient, tmp_path: Path) -> None:
    hostile = [
        log_record(1, log_type="../../etc/x"),
        log_record(2, category="../../../tmp"),
        log_record(3, log_type="mystery_log", category="zzz"),
        log_record(4, service="../etc"),
    ]
    resp = offline.post("/api/ingest/batch", json={"records": hostile})
    assert resp.status_code == 200
    assert [r["index"] for r in resp.json()["rejected"]] == [0, 1, 3]
    data = tmp_path / "data"
    files = _files_under(data)
    assert {f for f in files if not f.startswith("spool/")} == {"categories/log/other.jsonl"}
    assert _files_under(tmp_path) - {f"data/{f}" for f in files} == set()
    assert [r["event_id"] for r in _lines(data / "categories/log/other.jsonl")] == [
        "log-0000000003"
    ]


def test_spool_full_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = _settings(tmp_path, spool_max_bytes=1024 * 1024)
    records = [log_record(i, message="m" * 400) for i in range(4000)]  # ~2 MB of JSON
    with TestClient(create_app(settings)) as client:
        resp = client.post("/api/ingest/batch", json={"records": records})
        metrics = client.get("/api/metrics").json()
        health = client.get("/health")
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert "spool cannot hold it" in resp.json()["message"]
    detail = resp.json()["detail"]
    assert (detail["accepted"], detail["retry"], detail["spooled"]) == (0, 4000, 0)
    assert [r["status"] for r in detail["results"]] == ["retry"] * 4000
    assert [r["event_id"] for r in detail["results"]] == [r["event_id"] for r in records]
    assert "SPOOL_MAX_BYTES" in detail["results"][0]["error"]
    assert metrics["counters"]["unavailable_503"] == 1
    assert metrics["counters"]["answered_retry"] == 4000
    assert metrics["counters"]["accepted"] == 0
    assert metrics["spool_bytes"] == 0
    assert not (tmp_path / "data" / "categories").exists()
    assert health.status_code == 200  # smaller batches still fit


def test_records_land_on_their_kinds_stream_and_category_files(
    settings: Settings, tmp_path: Path
) -> None:
    app_settings = _settings(tmp_path, endpoint=settings.aws_endpoint_url or "")
    batch = [
        *mixed_batch(30),
        log_record(100, is_anomaly=True, anomaly_type="cpu_spike", level="ERROR"),
        metric_record(101, service="auth-service"),
        apm_record(102, service="ledger-service"),
    ]
    with TestClient(create_app(app_settings)) as client:
        resp = client.post("/api/ingest/batch", json={"records": batch})
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert {k: answer[k] for k in ("accepted", "rejected", "spooled", "retry")} == {
            "accepted": 33,
            "rejected": [],
            "spooled": 0,
            "retry": 0,
        }
        assert answer["results"] == [
            {"index": i, "event_id": r["event_id"], "status": "accepted"}
            for i, r in enumerate(batch)
        ]
        metrics = client.get("/api/metrics").json()["counters"]
        health = client.get("/health").json()
    assert metrics["to_kinesis"] == 33 and metrics["spooled"] == 0
    assert health["kinesis_reachable"] is True

    kinesis = aws.client("kinesis", settings)
    expected = {"log": set(), "metric": set(), "apm": set()}
    services = {}
    for record in batch:
        expected[record["kind"]].add(record["event_id"])
        services[record["event_id"]] = record["service"]
    for kind, stream in (
        ("log", "stage01-logs-stream"),
        ("metric", "stage01-metrics-stream"),
        ("apm", "stage01-apm-stream"),
    ):
        contents = read_stream(kinesis, stream)
        got = [json.loads(r.data) for r in contents.records]
        assert sorted(r["event_id"] for r in got) == sorted(expected[kind])
        for user_record in contents.records:
            event_id = json.loads(user_record.data)["event_id"]
            assert user_record.partition_key == services[event_id]

    categories = tmp_path / "data" / "categories"
    app_log = _lines(categories / "application/api_gateway_log.jsonl")
    assert len(app_log) == 11
    anomalies = _lines(categories / "anomaly/api_gateway_log.jsonl")
    assert [r["event_id"] for r in anomalies] == ["log-0000000100"]
    assert len(_lines(categories / "metric/other.jsonl")) == 11
    assert len(_lines(categories / "apm/other.jsonl")) == 11


def test_dead_consolidation_does_not_slow_kinesis(settings: Settings, tmp_path: Path) -> None:
    """Consolidation accepts connections but never answers: ingestion latency stays low."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(100)
    app_settings = _settings(tmp_path, endpoint=settings.aws_endpoint_url or "")
    app_settings.consolidation_port = silent.getsockname()[1]
    app_settings.consolidation_queue_bytes = 20_000  # three batches of 20 (~6.3 KB each)
    latencies = []
    try:
        with TestClient(create_app(app_settings)) as client:
            for n in range(10):
                started = time.perf_counter()
                resp = client.post("/api/ingest/batch", json={"records": mixed_batch(20, n * 20)})
                latencies.append(time.perf_counter() - started)
                assert resp.status_code == 200
                assert resp.json()["spooled"] == 0
            counters = client.get("/api/metrics").json()["counters"]
    finally:
        silent.close()
    assert counters["to_kinesis"] == 200
    # The byte budget holds three batches (one in delivery, two waiting); the rest were dropped
    # and counted.
    assert counters["consolidation_dropped"] >= 7 * 20
    assert counters["consolidation_delivered"] == 0
    assert max(latencies) < 2.0, latencies
    kinesis = aws.client("kinesis", settings)
    total = sum(
        len(read_stream(kinesis, s).records)
        for s in ("stage01-logs-stream", "stage01-metrics-stream", "stage01-apm-stream")
    )
    assert total == 200


def test_prometheus_and_status_page_show_the_counters(offline: TestClient) -> None:
    offline.post("/api/ingest/batch", json={"records": [log_record(1), {"kind": "log"}]})
    metrics = offline.get("/metrics").text
    assert "ingestion_accepted_total" in metrics
    assert "ingestion_rejected_total" in metrics
    assert "ingestion_spool_bytes" in metrics
    page = offline.get("/").text
    assert "spooled" in page and "consolidation_dropped" in page


def test_control_token_guards_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.common.config import get_settings

    monkeypatch.setenv("CONTROL_TOKEN", "s3cret")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(_settings(tmp_path))) as client:
            refused = client.post("/api/ingest/batch", json={"records": [log_record(1)]})
            allowed = client.post(
                "/api/ingest/batch",
                json={"records": [log_record(1)]},
                headers={"Authorization": "Bearer s3cret"},
            )
    finally:
        get_settings.cache_clear()
    assert refused.status_code == 401
    assert allowed.status_code == 200


def test_openapi_documents_the_bodies(offline: TestClient) -> None:
    spec = offline.get("/openapi.json").json()
    batch = spec["paths"]["/api/ingest/batch"]["post"]["requestBody"]["content"]
    assert batch["application/json"]["schema"]["properties"]["records"]["maxItems"] == 5000
    one = spec["paths"]["/api/ingest"]["post"]["requestBody"]["content"]["application/json"]
    assert "kind" in one["schema"]["properties"]

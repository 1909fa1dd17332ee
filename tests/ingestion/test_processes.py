"""The Ingestion Interface as a real process: Kinesis outages go to the spool and drain exactly
once, the spool survives a restart, and Log Consolidation receives what was accepted."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from stages.common import aws
from stages.common.config import Settings
from tests.ingestion.helpers import read_stream
from tests.support.fault_proxy import FaultProxy
from tests.support.processes import Process, base_env, free_port, start_service
from tests.support.records import log_record, mixed_batch

STREAMS = ("stage01-logs-stream", "stage01-metrics-stream", "stage01-apm-stream")


def _start_ingestion(
    endpoint: str, data_dir: Path, log_dir: Path, port: int, **env: str
) -> tuple[Process, str]:
    environment = base_env(
        endpoint,
        INGESTION_PORT=str(port),
        DATA_DIR=str(data_dir),
        INGEST_KINESIS_TIMEOUT_SECONDS="5",
        **env,
    )
    environment.setdefault("CONSOLIDATION_PORT", str(free_port()))
    name = f"ingestion-{port}-{time.monotonic_ns()}"
    return start_service("ingestion", environment, log_dir, port, name)


def _event_ids_on_kinesis(settings: Settings) -> Counter[str]:
    kinesis = aws.client("kinesis", settings)
    ids: Counter[str] = Counter()
    for stream in STREAMS:
        for record in read_stream(kinesis, stream).records:
            ids[json.loads(record.data)["event_id"]] += 1
    return ids


def _wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.2)


def _ingest(url: str, batch: list[dict[str, Any]]) -> dict[str, Any]:
    resp = httpx.post(f"{url}/api/ingest/batch", json={"records": batch}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_kinesis_outage_spools_then_drains_exactly_once(
    settings: Settings, endpoint: str, tmp_path: Path, proc_logs: Path
) -> None:
    with FaultProxy(endpoint) as proxy:
        proxy.configure(putrecords_throttle=1.0)
        proc, url = _start_ingestion(proxy.url, tmp_path / "data", proc_logs, free_port())
        try:
            sent: list[dict[str, Any]] = []
            spooled = 0
            for n in range(5):
                batch = mixed_batch(60, start=n * 60)
                sent += batch
                answer = _ingest(url, batch)
                assert answer["accepted"] == 60
                spooled += answer["spooled"]
            assert spooled == 300
            health = httpx.get(f"{url}/health").json()
            assert health["status"] == "healthy"
            assert health["kinesis_reachable"] is False and health["spool_bytes"] > 0
            assert _event_ids_on_kinesis(settings) == Counter()

            proxy.clear()
            _wait_for(lambda: httpx.get(f"{url}/api/metrics").json()["spool_bytes"] == 0)
            counters = httpx.get(f"{url}/api/metrics").json()["counters"]
        finally:
            proc.stop()
    assert counters["spooled"] == 300 and counters["spool_drained"] == 300
    on_kinesis = _event_ids_on_kinesis(settings)
    assert on_kinesis == Counter(r["event_id"] for r in sent)  # each exactly once
    assert list((tmp_path / "data" / "spool").glob("seg-*")) == []


def test_spool_survives_a_restart_and_drains(
    settings: Settings, endpoint: str, tmp_path: Path, proc_logs: Path
) -> None:
    data_dir = tmp_path / "data"
    closed = f"http://127.0.0.1:{free_port()}"
    proc, url = _start_ingestion(closed, data_dir, proc_logs, free_port())
    batch = mixed_batch(90)
    try:
        assert _ingest(url, batch)["spooled"] == 90
    finally:
        proc.stop()
    assert list((data_dir / "spool").glob("seg-*.jsonl"))

    proc, url = _start_ingestion(endpoint, data_dir, proc_logs, free_port())
    try:
        _wait_for(lambda: httpx.get(f"{url}/api/metrics").json()["spool_bytes"] == 0)
        # New records keep flowing after the drain, straight to Kinesis.
        assert _ingest(url, mixed_batch(9, start=1000))["spooled"] == 0
    finally:
        proc.stop()
    expected = Counter(r["event_id"] for r in batch + mixed_batch(9, start=1000))
    assert _event_ids_on_kinesis(settings) == expected


def test_accepted_records_reach_log_consolidation(
    endpoint: str, tmp_path: Path, proc_logs: Path
) -> None:
    consolidation_port = free_port()
    env = base_env(
        endpoint, CONSOLIDATION_PORT=str(consolidation_port), DATA_DIR=str(tmp_path / "c")
    )
    consolidation, consolidation_url = start_service(
        "consolidation", env, proc_logs, consolidation_port
    )
    proc, url = _start_ingestion(
        endpoint,
        tmp_path / "data",
        proc_logs,
        free_port(),
        CONSOLIDATION_PORT=str(consolidation_port),
    )
    try:
        batch = mixed_batch(30)
        batch[0]["is_anomaly"] = True
        batch[0]["anomaly_type"] = "cpu_spike"
        _ingest(url, batch)

        def total() -> int:
            return httpx.get(f"{consolidation_url}/api/stats").json()["total"]

        _wait_for(lambda: total() == 30)
        stats = httpx.get(f"{consolidation_url}/api/stats").json()
        counters = httpx.get(f"{url}/api/metrics").json()["counters"]
    finally:
        proc.stop()
        consolidation.stop()
    assert stats["anomalous"] == 1
    assert stats["by_service"] == {"api-gateway": 10, "payment-service": 10, "account-service": 10}
    assert counters["consolidation_delivered"] == 30
    assert counters["consolidation_failed"] == counters["consolidation_dropped"] == 0


def test_a_503_names_exactly_the_records_to_retry_and_a_retry_lands_each_once(
    settings: Settings, endpoint: str, tmp_path: Path, proc_logs: Path
) -> None:
    """Kinesis takes part of a batch, the spool has no room for the rest: the 503 says record by
    record which are in, and resending the others under their answered ids completes the batch
    with every record once. The records carry no event_id: ingestion assigns and answers it."""
    records = []
    for i in range(200):
        record = log_record(i, message=f"{i} " + "x" * 16_000)
        del record["event_id"]
        records.append(record)
    with FaultProxy(endpoint, seed=7) as proxy:
        # Each PutRecords entry fails with 90 % (three attempts: ~70 % of the records never
        # get in); without aggregation an entry is one record. ~2.3 MB left over > the spool.
        proxy.configure(putrecords_partial=0.9)
        proc, url = _start_ingestion(
            proxy.url,
            tmp_path / "data",
            proc_logs,
            free_port(),
            PRODUCER_AGGREGATE="false",
            SPOOL_MAX_BYTES=str(1024 * 1024),
        )
        try:
            resp = httpx.post(f"{url}/api/ingest/batch", json={"records": records}, timeout=30)
            assert resp.status_code == 503, resp.text
            assert int(resp.headers["Retry-After"]) >= 1
            detail = resp.json()["detail"]
            results = detail["results"]
            assert [r["index"] for r in results] == list(range(200))
            accepted = {r["event_id"] for r in results if r["status"] == "accepted"}
            retry = [r for r in results if r["status"] == "retry"]
            assert accepted and retry and len(accepted) + len(retry) == 200
            assert detail["accepted"] == len(accepted) and detail["retry"] == len(retry)
            assert detail["spooled"] == 0
            metrics = httpx.get(f"{url}/api/metrics").json()
            assert metrics["spool_bytes"] == 0
            assert metrics["counters"]["accepted"] == len(accepted)
            assert metrics["counters"]["answered_retry"] == len(retry)
            # What the answer calls accepted is on Kinesis, once; nothing else is.
            assert _event_ids_on_kinesis(settings) == Counter(accepted)

            proxy.clear()
            again = [records[r["index"]] | {"event_id": r["event_id"]} for r in retry]
            answer = _ingest(url, again)
            assert [r["status"] for r in answer["results"]] == ["accepted"] * len(retry)
            assert [r["event_id"] for r in answer["results"]] == [r["event_id"] for r in retry]
        finally:
            proc.stop()
    every = Counter(r["event_id"] for r in results)
    assert len(every) == 200
    assert _event_ids_on_kinesis(settings) == every
    # The category files took the accepted part of the 503 and the retry: each record once.
    category = tmp_path / "data" / "categories" / "application" / "api_gateway_log.jsonl"
    lines = category.read_text().splitlines()
    assert Counter(json.loads(line)["event_id"] for line in lines) == every

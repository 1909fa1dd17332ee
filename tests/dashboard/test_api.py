"""The dashboard's API against a real emulator, with objects put straight into the lake."""

from __future__ import annotations

import gzip
import random
from typing import Any

from tests.dashboard.helpers import HOUR, DashboardProcess, jsonl, log_record, put_objects

MANY = 5_000


def test_totals_are_exact_over_5000_objects_and_the_listing_pages_through_all(
    dashboard: DashboardProcess, s3: Any
) -> None:
    objects = [(f"batch/obj-{i:05d}.json", b"x" * (i % 97)) for i in range(MANY)]
    put_objects(s3, "md-processed", objects)

    summary = dashboard.json("/api/buckets/md-processed", fresh="true")
    assert summary["objects"] == MANY
    assert summary["bytes"] == sum(len(body) for _, body in objects)
    assert summary["list_calls"] == 5  # 1,000 keys per ListObjectsV2 page

    top = dashboard.json("/api/buckets/md-processed/list")
    assert top["prefixes"] == ["batch/"] and top["objects"] == []

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"prefix": "batch/", "limit": 700} | ({"token": token} if token else {})
        page = dashboard.json("/api/buckets/md-processed/list", **params)
        pages += 1
        seen.extend(item["key"] for item in page["objects"])
        token = page["next_token"]
        if token is None:
            break
    assert pages == 8  # ceil(5000 / 700)
    assert seen == [key for key, _ in objects]


def test_summaries_are_cached_until_fresh_is_asked_for(
    dashboard: DashboardProcess, s3: Any
) -> None:
    put_objects(s3, "md-features", [(f"f/{i}.json", b"{}") for i in range(3)])
    assert dashboard.json("/api/buckets/md-features", fresh="true")["objects"] == 3
    calls = dashboard.metric("dashboard_s3_list_calls_total")

    s3.put_object(Bucket="md-features", Key="f/new.json", Body=b"{}")
    cached = dashboard.json("/api/buckets/md-features")
    assert cached["objects"] == 3
    assert dashboard.metric("dashboard_s3_list_calls_total") == calls  # no listing at all

    assert dashboard.json("/api/buckets/md-features", fresh="true")["objects"] == 4
    every = {b["bucket"]: b for b in dashboard.json("/api/buckets")["buckets"]}
    assert every["md-features"]["objects"] == 4
    assert set(every) == {
        "md-raw-logs",
        "md-raw-metrics",
        "md-raw-apm",
        "md-processed",
        "md-features",
        "md-models",
    }


def _big_jsonl(lines: int) -> tuple[list[dict[str, Any]], bytes]:
    rng = random.Random(7)
    records = [
        log_record(i, anomalous=i % 4 == 1, message=f"payload {rng.getrandbits(256):x}")
        for i in range(lines)
    ]
    return records, jsonl(records)


def test_the_viewer_reads_only_a_prefix_of_a_5_mb_object(
    dashboard: DashboardProcess, s3: Any
) -> None:
    records, body = _big_jsonl(22_000)
    assert len(body) > 5_000_000
    key = f"service=api-gateway/{HOUR}/big.jsonl"
    s3.put_object(Bucket="md-raw-logs", Key=key, Body=body)
    before = dashboard.metric("dashboard_s3_bytes_read_total", purpose="viewer")

    excerpt = dashboard.json("/api/buckets/md-raw-logs/object", key=key, lines=20)

    assert [line["record"] for line in excerpt["lines"]] == records[:20]
    assert [line["anomalous"] for line in excerpt["lines"]] == [i % 4 == 1 for i in range(20)]
    assert excerpt["anomalous"] == 5
    assert excerpt["object_size"] == len(body)
    assert excerpt["complete"] is False
    assert 0 < excerpt["bytes_read"] <= 64 * 1024
    read = dashboard.metric("dashboard_s3_bytes_read_total", purpose="viewer") - before
    assert read == excerpt["bytes_read"]


def test_the_viewer_streams_gzip_objects_and_reads_small_ones_to_the_end(
    dashboard: DashboardProcess, s3: Any
) -> None:
    records, body = _big_jsonl(22_000)
    packed = gzip.compress(body)
    key = f"service=api-gateway/{HOUR}/big.jsonl.gz"
    s3.put_object(Bucket="md-raw-logs", Key=key, Body=packed)

    excerpt = dashboard.json("/api/buckets/md-raw-logs/object", key=key, lines=300)
    assert [line["record"] for line in excerpt["lines"]] == records[:300]
    assert excerpt["bytes_read"] < len(packed) / 4

    small_key = f"service=api-gateway/{HOUR}/small.jsonl.gz"
    s3.put_object(Bucket="md-raw-logs", Key=small_key, Body=gzip.compress(jsonl(records[:3])))
    whole = dashboard.json("/api/buckets/md-raw-logs/object", key=small_key, lines=50)
    assert [line["record"] for line in whole["lines"]] == records[:3]
    assert whole["complete"] is True


def test_lines_that_are_not_json_objects_are_shown_raw(
    dashboard: DashboardProcess, s3: Any
) -> None:
    key = "_dead-letter/stream=stage01-logs-stream/odd.jsonl"
    s3.put_object(Bucket="md-raw-logs", Key=key, Body=b'not json\n[1, 2]\n{"is_anomaly": true}')
    excerpt = dashboard.json("/api/buckets/md-raw-logs/object", key=key, lines=10)
    assert [(e["raw"], e["anomalous"]) for e in excerpt["lines"]] == [
        ("not json", False),
        ("[1, 2]", False),
        (None, True),
    ]


def test_partitions_group_service_day_hour_with_records_and_small_file_warnings(
    dashboard: DashboardProcess, s3: Any
) -> None:
    bucket = "md-raw-apm"
    small = [
        (f"service=checkout/{HOUR}/part-{i}.jsonl", jsonl([log_record(i), log_record(i + 1)]))
        for i in range(5)
    ]
    single = [
        (
            "service=auth/year=2026/month=11/day=28/hour=01/part-0.jsonl.gz",
            gzip.compress(jsonl(log_record(i) for i in range(7))),
        )
    ]
    put_objects(s3, bucket, small + single + [("loose.txt", b"x")])

    tree = dashboard.json(f"/api/buckets/{bucket}/partitions", fresh="true")

    assert tree["objects"] == 7 and tree["other_objects"] == 1
    by_service = {s["service"]: s for s in tree["services"]}
    assert set(by_service) == {"checkout", "auth"}
    checkout_hour = by_service["checkout"]["days"][0]["hours"][0]
    assert by_service["checkout"]["days"][0]["day"] == "2026-11-27"
    assert (checkout_hour["hour"], checkout_hour["objects"]) == ("06", 5)
    assert checkout_hour["records"] == 10
    assert checkout_hour["bytes"] == sum(len(body) for _, body in small)
    assert checkout_hour["small_files"] is True
    auth_hour = by_service["auth"]["days"][0]["hours"][0]
    assert (auth_hour["records"], auth_hour["small_files"]) == (7, False)
    assert tree["small_file_partitions"] == 1

    only = dashboard.json(f"/api/buckets/{bucket}/partitions", service="auth")
    assert [s["service"] for s in only["services"]] == ["auth"]


def test_only_the_configured_buckets_and_streams_are_readable(
    dashboard: DashboardProcess, s3: Any
) -> None:
    s3.create_bucket(Bucket="someone-elses-bucket")
    for path in (
        "/api/buckets/someone-elses-bucket",
        "/api/buckets/someone-elses-bucket/list",
        "/api/buckets/someone-elses-bucket/partitions",
        "/api/buckets/someone-elses-bucket/object?key=a",
        "/api/streams/someone-elses-stream",
    ):
        response = dashboard.get(path)
        assert response.status_code == 404, path
        assert "is not one of the dashboard's" in response.json()["message"]

    missing = dashboard.get("/api/buckets/md-raw-logs/object", key="no/such/key.jsonl")
    assert missing.status_code == 404
    assert "no/such/key.jsonl" in missing.json()["message"]
    assert dashboard.json("/api/streams/stage01-logs-stream")["open_shards"] == 2


def test_out_of_bounds_parameters_are_clear_4xx(dashboard: DashboardProcess) -> None:
    cases = {
        "/api/buckets/md-raw-logs/list?limit=1001": 422,
        "/api/buckets/md-raw-logs/list?limit=0": 422,
        "/api/buckets/md-raw-logs/list?prefix=" + "p" * 1025: 422,
        "/api/buckets/md-raw-logs/object?key=a&lines=501": 422,
        "/api/buckets/md-raw-logs/object?key=a&lines=0": 422,
        "/api/buckets/md-raw-logs/object": 422,
        "/api/timeseries?points=0": 422,
    }
    for path, status in cases.items():
        response = dashboard.get(path)
        assert response.status_code == status, (path, response.text)
        assert response.json()["message"], path


def test_a_consumer_that_is_down_is_reported_unreachable(dashboard: DashboardProcess) -> None:
    status = dashboard.json("/api/consumer")
    assert status["state"] == "unreachable"
    assert "Connect" in status["reason"]
    series = dashboard.json("/api/timeseries")
    assert series["t"], "the sampler keeps sampling while the consumer is down"
    assert set(series["records_out_per_s"]) == {None}  # gaps, not zeros

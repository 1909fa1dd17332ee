"""What one dashboard request may cost: S3 calls for the partition panel, decompressed bytes for
gzip objects. A real emulator behind the fault proxy (no faults), which counts every S3 request
the dashboard makes."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.helpers import (
    HOUR,
    DashboardProcess,
    PeakRss,
    gzip_bomb,
    jsonl,
    log_record,
    put_objects,
)
from tests.support.fault_proxy import FaultProxy

CALLS_PER_REQUEST = 10
COUNT_BUDGET = 1_500_000
BIG_OBJECT = b"x" * 1_600_000 + b"\n"  # over the count budget on its own
# Far below the gigabyte a bomb would take; the 64 MiB cap plus the process's own noise.
MAX_GROWTH_MB = 300
FAST_SECONDS = 15


@pytest.fixture(scope="module")
def proxy(lake_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(lake_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def dashboard(proxy: FaultProxy, module_logs: Path) -> Iterator[DashboardProcess]:
    # DASHBOARD_MAX_DECOMPRESSED_BYTES keeps its default: the default must protect.
    proc = DashboardProcess(
        proxy.url,
        module_logs,
        DASHBOARD_CACHE_SECONDS="300",
        DASHBOARD_COUNT_BUDGET_BYTES=str(COUNT_BUDGET),
        DASHBOARD_PARTITION_S3_CALLS=str(CALLS_PER_REQUEST),
    )
    try:
        proc.wait_healthy(60)
        yield proc
    finally:
        proc.stop()


def _s3_requests(proxy: FaultProxy) -> int:
    return sum(count for op, count in proxy.received.items() if op.startswith("s3:"))


def _hours(tree: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (svc["service"], day["day"], hour["hour"]): hour
        for svc in tree["services"]
        for day in svc["days"]
        for hour in day["hours"]
    }


def test_partitions_over_the_budget_are_not_relisted_and_each_request_is_bounded(
    dashboard: DashboardProcess, proxy: FaultProxy, s3: Any
) -> None:
    bucket = "md-raw-metrics"
    big = [
        (
            f"service=big/year=2026/month=11/day={20 + i // 24:02d}/hour={i % 24:02d}/p.jsonl",
            BIG_OBJECT,
        )
        for i in range(30)
    ]
    small = [
        (
            f"service=small/year=2026/month=11/day=01/hour={h:02d}/p.jsonl",
            jsonl(log_record(i) for i in range(3)),
        )
        for h in range(4)
    ]
    put_objects(s3, bucket, big + small)

    # The first request lists the bucket once for its totals, then counts within its limit.
    before = _s3_requests(proxy)
    first = dashboard.json(f"/api/buckets/{bucket}/partitions", fresh="true")
    assert _s3_requests(proxy) - before <= 1 + CALLS_PER_REQUEST
    assert first["objects"] == 34
    assert first["cut_short"] is True
    assert "DASHBOARD_PARTITION_S3_CALLS" in first["cut_reason"]
    assert first["uncounted_partitions"] == 34 - sum(
        1 for h in _hours(first).values() if h["records"] is not None
    )
    assert all(h["uncounted"] for h in _hours(first).values() if h["records"] is None)

    # Each refresh goes on where the last stopped, never over the limit, until all is known.
    answers = [first]
    for _ in range(8):
        before = _s3_requests(proxy)
        answer = dashboard.json(f"/api/buckets/{bucket}/partitions")
        made = _s3_requests(proxy) - before
        assert made <= CALLS_PER_REQUEST
        assert answer["s3_calls"] == made
        answers.append(answer)
        if not answer["cut_short"]:
            break
    assert answers[-1]["cut_short"] is False, [a["cut_reason"] for a in answers]
    assert len(answers) >= 4  # 34 partitions, 38 calls to know them all, 10 per request

    # From now on a refresh costs nothing: over-budget partitions are not listed again.
    before = _s3_requests(proxy)
    settled = dashboard.json(f"/api/buckets/{bucket}/partitions")
    assert _s3_requests(proxy) - before == 0 == settled["s3_calls"]
    hours = _hours(settled)
    assert {k: h["records"] for k, h in hours.items() if k[0] == "small"} == {
        ("small", "2026-11-01", f"{h:02d}"): 3 for h in range(4)
    }
    over = [h for k, h in hours.items() if k[0] == "big"]
    assert len(over) == 30
    assert all(h["records"] is None for h in over)
    assert all("DASHBOARD_COUNT_BUDGET_BYTES" in h["uncounted"] for h in over)
    assert settled["uncounted_partitions"] == 30 and settled["cut_reason"] is None


def test_a_gzip_bomb_in_a_partition_is_capped_fast_in_bounded_memory(
    dashboard: DashboardProcess, s3: Any
) -> None:
    bucket = "md-raw-apm"
    bomb, inflated = gzip_bomb()
    assert len(bomb) < COUNT_BUDGET and inflated > 1000 * len(bomb)
    bomb_key = "service=bomb/year=2026/month=11/day=27/hour=06/part-0.jsonl.gz"
    normal = gzip.compress(jsonl(log_record(i) for i in range(3)))
    s3.put_object(Bucket=bucket, Key=bomb_key, Body=bomb)
    s3.put_object(
        Bucket=bucket,
        Key=f"service=bomb/{HOUR.replace('hour=06', 'hour=05')}/p.jsonl.gz",
        Body=normal,
    )

    with PeakRss(dashboard.pid) as rss:
        began = time.monotonic()
        first = dashboard.json(f"/api/buckets/{bucket}/partitions", fresh="true")
        took = time.monotonic() - began
    print(f"gzip bomb in a partition: {took:.2f}s, dashboard RSS +{rss.growth_mb:.0f} MB")
    assert took < FAST_SECONDS
    assert rss.growth_mb < MAX_GROWTH_MB
    assert first["cut_short"] is True
    assert "DASHBOARD_MAX_DECOMPRESSED_BYTES" in first["cut_reason"]
    hours = _hours(first)
    assert hours[("bomb", "2026-11-27", "06")]["records"] is None

    # The bomb is remembered: the next request does not inflate it again and counts the rest.
    read_before = dashboard.metric("dashboard_s3_bytes_read_total", purpose="count")
    began = time.monotonic()
    second = dashboard.json(f"/api/buckets/{bucket}/partitions")
    assert time.monotonic() - began < FAST_SECONDS
    read = dashboard.metric("dashboard_s3_bytes_read_total", purpose="count") - read_before
    assert read == len(normal)
    hours = _hours(second)
    assert hours[("bomb", "2026-11-27", "05")]["records"] == 3
    bomb_hour = hours[("bomb", "2026-11-27", "06")]
    assert bomb_hour["records"] is None
    assert bomb_key in bomb_hour["uncounted"]
    assert "DASHBOARD_MAX_DECOMPRESSED_BYTES" in bomb_hour["uncounted"]
    assert second["cut_short"] is False and second["uncounted_partitions"] == 1


def test_the_viewer_caps_what_it_decompresses_from_a_gzip_bomb(
    dashboard: DashboardProcess, s3: Any
) -> None:
    bomb, _ = gzip_bomb()
    key = "manual/bomb.jsonl.gz"
    s3.put_object(Bucket="md-models", Key=key, Body=bomb)

    with PeakRss(dashboard.pid) as rss:
        began = time.monotonic()
        excerpt = dashboard.json("/api/buckets/md-models/object", key=key, lines=10)
        took = time.monotonic() - began
    print(f"gzip bomb in the viewer: {took:.2f}s, dashboard RSS +{rss.growth_mb:.0f} MB")
    assert took < FAST_SECONDS
    assert rss.growth_mb < MAX_GROWTH_MB
    assert excerpt["truncated"] is True and excerpt["complete"] is False
    assert "DASHBOARD_MAX_DECOMPRESSED_BYTES" in excerpt["reason"]
    assert excerpt["lines"] == []  # 64 MiB of zeros hold no whole line
    assert excerpt["bytes_read"] < len(bomb)

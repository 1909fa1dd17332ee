"""Labels by scope, in process: every record that falls in a window's scope carries that
window, whichever part of the request it was made for, and no other record carries one."""

from __future__ import annotations

from typing import Any

from stages.common import estate
from tests.synthesis.helpers import WINDOW_END, WINDOW_START, anomaly, make

CPU_SCOPE = {
    "logs": {"system_resource_log": ["payment-service", "ledger-service"]},
    "metrics": {"cpu.utilization": ["payment-service"], "latency.p95": ["payment-service"]},
    "apm": ["payment-service"],
    "hosts": [],
}
DISK_SCOPE = {
    "logs": {"disk_usage_log": ["account-service"], "host_health_log": ["account-service"]},
    "metrics": {"disk.utilization": ["account-service"]},
    "apm": ["account-service"],
    "hosts": ["account-2"],
}


def _ms(stamp: str) -> str:
    """The helpers' whole-second stamps in the records' form (they then compare as strings)."""
    return stamp.replace("Z", ".000Z")


def _covers(window: dict[str, Any], record: dict[str, Any], trace_start: str) -> bool:
    moment = trace_start if record["kind"] == "apm" else record["timestamp"]
    if not _ms(window["window_start"]) <= moment < _ms(window["window_end"]):
        return False
    scope = window["scope"]
    pinned = {s.name for s in estate.SERVICES if set(s.hosts) & set(scope["hosts"])}
    if record["service"] in pinned and record["host"] not in scope["hosts"]:
        return False
    if record["kind"] == "log":
        return record["service"] in scope["logs"].get(record["log_type"], [])
    if record["kind"] == "metric":
        return record["service"] in scope["metrics"].get(record["metric_name"], [])
    return record["service"] in scope["apm"]


def test_every_record_in_a_scope_is_labelled_and_no_other() -> None:
    expressed = anomaly("cpu_spike", scope=CPU_SCOPE, target_service="payment-service")
    other = anomaly("disk_full", scope=DISK_SCOPE, target_entity="account-2")
    batch = make(
        count=4000,
        timestamp="2026-03-02T09:55:00Z",  # 5 min before the windows to 5 min after
        spread_seconds=1200,
        services=["payment-service", "ledger-service", "account-service"],
        anomaly=expressed,
        anomalous_share=0.1,
        windows=[other],
    )
    starts: dict[str, str] = {}
    for record in batch.records:
        if record["kind"] == "apm":
            starts.setdefault(record["trace_id"], record["timestamp"])
    counts = {"test-cpu_spike": 0, "test-disk_full": 0}
    for record in batch.records:
        trace_start = starts.get(record.get("trace_id") or "", record["timestamp"])
        owners = [w["scenario_id"] for w in (expressed, other) if _covers(w, record, trace_start)]
        if owners:
            assert record["is_anomaly"] and record["scenario_id"] in owners, record
            counts[record["scenario_id"]] += 1
        else:
            assert not record["is_anomaly"] and record["scenario_id"] is None, record
    assert all(counts.values()), counts
    # the host pin: account-service's disk logs from its other hosts stay normal
    siblings = [
        r
        for r in batch.records
        if r.get("log_type") == "disk_usage_log"
        and r["service"] == "account-service"
        and r["host"] != "account-2"
        and _ms(WINDOW_START) <= r["timestamp"] < _ms(WINDOW_END)
    ]
    assert siblings and not any(r["is_anomaly"] for r in siblings)


def test_the_expressed_anomaly_covers_each_signal_of_its_scope() -> None:
    batch = make(
        count=10, anomaly=anomaly("cpu_spike", scope=CPU_SCOPE), anomalous_share=1.0, seed=3
    )
    logs = {(r["log_type"], r["service"]) for r in batch.records if r["kind"] == "log"}
    metrics = {r["metric_name"] for r in batch.records if r["kind"] == "metric"}
    assert logs == {
        ("system_resource_log", "payment-service"),
        ("system_resource_log", "ledger-service"),
    }
    assert metrics == {"cpu.utilization", "latency.p95"}


def test_record_timestamps_are_the_milliseconds_they_stand_for() -> None:
    """Synthesis formats each second once and appends the milliseconds; the result must be
    what formatting the exact moment gives, for any millisecond, before 1970 included."""
    from datetime import timedelta

    from stages.common.records import format_timestamp
    from stages.synthesis.generator import _stamp
    from stages.synthesis.scope import EPOCH

    moments = [0, 1, 999, 1_000, -1, -999, -1_000, -1_001, 1_764_758_400_123, 253_402_300_799_999]
    moments += [-62_135_596_800_000 + n for n in (0, 1, 999, 1_000)]  # year 1, zero-padded
    for ms in moments:
        assert _stamp(ms) == format_timestamp(EPOCH + timedelta(milliseconds=ms)), ms

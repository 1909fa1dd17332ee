"""Synthesis's status-page totals are read back from its Prometheus counters."""

from __future__ import annotations

from prometheus_client import REGISTRY

from stages.synthesis.telemetry import FORWARD_BATCHES, FORWARDED, STATS, count_records


def test_status_totals_are_the_prometheus_counters() -> None:
    before = STATS.snapshot()
    count_records("metric", False, 4)
    count_records("metric", True, 0)  # nothing generated: nothing counted
    FORWARD_BATCHES.labels("retried").inc()
    FORWARDED.inc(7)
    after = STATS.snapshot()
    assert after["records_metric"] - before.get("records_metric", 0) == 4
    assert after["forward_retries"] - before.get("forward_retries", 0) == 1
    assert after["forwarded"] - before.get("forwarded", 0) == 7
    exposed = REGISTRY.get_sample_value(
        "synthesis_records_total", {"kind": "metric", "anomalous": "false"}
    )
    assert after["records_metric"] == exposed
    assert REGISTRY.get_sample_value("synthesis_forwarded_records_total") == after["forwarded"]
    # Only what happened is listed, in name order, as the status page shows it.
    assert all(value > 0 for value in after.values())
    assert list(after) == sorted(after)

"""The fault suite: a generation run through the whole fleet while one thing breaks.

Each case generates records with the orchestrator's continuous generator, breaks something in
the middle, and then compares, by event_id and per kind, what synthesis offered the Ingestion
Interface, what ingestion accepted (as its answers say, record by record), and what is in S3.
Every case prints a load report (offered, accepted, in S3, duplicated, lost, loss %) and fails
unless nothing accepted is missing from S3 and nothing is there twice. Records ingestion did not
accept must have been reported failed by synthesis (the orchestrator then retries the call under
its key, and synthesis sends the same records again): they are not lost, and the report says how
many of them reached S3 anyway (Kinesis had them before the failure).

One fleet serves the module; the cases run one after another and each restores what it broke.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import pytest

from tests.faults.support import (
    CONSUMER,
    FaultFleet,
    assert_no_loss_no_duplicates,
    prometheus_value,
)

# The first case also pays for starting the fleet.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultFleet]:
    fleet_ = FaultFleet(tmp_path_factory.mktemp("faults"))
    try:
        fleet_.start()
        yield fleet_
    finally:
        fleet_.stop()


def consumer_url(fleet: FaultFleet) -> str:
    return fleet.run.url(CONSUMER)


def owned_shards(fleet: FaultFleet) -> float:
    return prometheus_value(consumer_url(fleet), "consumer_owned_shards")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_consumer_sigkilled_five_times(fleet: FaultFleet) -> None:
    rng = random.Random(11)
    kills: list[int] = []

    def during() -> None:
        for _ in range(5):
            # Each kill hits a consumer that holds shards and is writing (a restarted one first
            # waits for the dead one's leases to expire).
            wait_until(lambda: owned_shards(fleet) > 0, timeout=60, what="the consumer's leases")
            time.sleep(rng.uniform(0.5, 2.0))
            kills.append(int(owned_shards(fleet)))
            fleet.sigkill(CONSUMER)
            fleet.start_service(CONSUMER)

    report = fleet.run_case("consumer SIGKILLed 5 times", seconds=30, during=during)
    report.notes.append(f"shards held by the consumer at each kill: {kills}")
    print(report.notes[-1])
    assert len(kills) == 5 and all(kills), kills
    assert_no_loss_no_duplicates(report)


def test_ingestion_sigkilled_with_a_spool_and_restarted(fleet: FaultFleet) -> None:
    """AWS goes away so ingestion spools; ingestion is SIGKILLed with records in its spool,
    AWS comes back, ingestion restarts and drains the spool it finds on disk."""
    spooled_at_kill: list[int] = []

    def during() -> None:
        time.sleep(3)
        port = fleet.take_aws_away()
        try:
            wait_until(
                lambda: fleet.get("ingestion-interface", "/api/metrics")["spool_bytes"] > 0,
                timeout=30,
                what="ingestion to spool",
            )
            time.sleep(1)
            spooled_at_kill.append(fleet.get("ingestion-interface", "/api/metrics")["spool_bytes"])
            fleet.sigkill("ingestion-interface")
        finally:
            fleet.bring_aws_back(port)
        fleet.start_service("ingestion-interface")

    report = fleet.run_case("Ingestion Interface SIGKILLed mid-run", seconds=16, during=during)
    after = fleet.get("ingestion-interface", "/api/metrics")
    report.notes.append(
        f"spool at the kill: {spooled_at_kill[0]} bytes; drained after the restart: "
        f"{after['counters'].get('spool_drained', 0)} records; spool now {after['spool_bytes']} "
        "bytes"
    )
    print(report.notes[-1])
    assert spooled_at_kill[0] > 0
    # The restarted process found the spool on disk and moved it to Kinesis.
    assert after["counters"].get("spool_drained", 0) > 0, after
    assert after["spool_bytes"] == 0, after
    assert_no_loss_no_duplicates(report)


def test_emulator_unreachable_for_20_seconds(fleet: FaultFleet) -> None:
    dropped_before = prometheus_value(consumer_url(fleet), "consumer_duplicates_dropped_total")

    def during() -> None:
        time.sleep(3)
        port = fleet.take_aws_away()  # connection refused for every service
        time.sleep(20)
        fleet.bring_aws_back(port)

    report = fleet.run_case("emulator unreachable for 20 s", seconds=27, during=during)
    dropped = prometheus_value(consumer_url(fleet), "consumer_duplicates_dropped_total")
    report.notes.append(
        f"re-sent copies dropped by the consumer's duplicate window: {dropped - dropped_before:.0f}"
    )
    print(report.notes[-1])
    assert_no_loss_no_duplicates(report)


def test_log_consolidation_down_for_30_seconds(fleet: FaultFleet) -> None:
    before = fleet.get("ingestion-interface", "/api/metrics")["counters"]

    def during() -> None:
        time.sleep(1)
        stopped = fleet.run.cli("stop", "log-consolidation")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        time.sleep(30)
        fleet.start_service("log-consolidation")

    report = fleet.run_case("Log Consolidation down for 30 s", seconds=33, during=during)
    wait_until(
        lambda: (
            fleet.get("ingestion-interface", "/api/metrics")["consolidation_queue_batches"] == 0
        ),
        timeout=60,
        what="the consolidation queue to empty",
    )
    after = fleet.get("ingestion-interface", "/api/metrics")["counters"]
    outcome = {
        name: after.get(name, 0) - before.get(name, 0)
        for name in ("consolidation_delivered", "consolidation_failed", "consolidation_dropped")
    }
    accepted = report.total("accepted")
    report.notes.append(
        f"Log Consolidation: {outcome['consolidation_delivered']} records delivered, "
        f"{outcome['consolidation_failed']} failed after 3 attempts and "
        f"{outcome['consolidation_dropped']} dropped from a full queue (all counted; "
        "consolidation does not catch up on what it missed) of the "
        f"{accepted} accepted; Kinesis delivery went on"
    )
    print(report.notes[-1])
    assert_no_loss_no_duplicates(report)
    # Every accepted record has exactly one consolidation outcome, and the outage shows in it.
    assert sum(outcome.values()) == accepted, outcome
    assert outcome["consolidation_failed"] + outcome["consolidation_dropped"] > 0, outcome
    assert outcome["consolidation_delivered"] > 0, outcome


def test_two_consumers_over_a_multi_shard_stream_one_sigkilled(fleet: FaultFleet) -> None:
    other = fleet.extra_consumer("consumer-b")
    other.wait_healthy()

    def shared() -> bool:
        # Both hold shards of the 4-shard stream: the kill leaves some of it to take over.
        theirs = {s for s in other.owned_shards() if s.startswith("stage01-logs-stream")}
        return bool(theirs) and owned_shards(fleet) > 0 and len(theirs) < 4

    wait_until(shared, timeout=90, what="both consumers to own shards of the logs stream")
    taken_over: list[float] = []

    def during() -> None:
        time.sleep(4)
        fleet.sigkill(CONSUMER)
        killed = time.monotonic()
        wait_until(lambda: len(other.owned_shards()) == 6, timeout=30, what="the takeover")
        taken_over.append(time.monotonic() - killed)

    try:
        report = fleet.run_case(
            "two consumers over 6 shards (logs stream: 4), one SIGKILLed",
            seconds=14,
            during=during,
        )
    finally:
        fleet.start_service(CONSUMER)
        other.stop()
    report.notes.append(f"the survivor held all 6 shards {taken_over[0]:.1f} s after the kill")
    print(report.notes[-1])
    assert_no_loss_no_duplicates(report)


def test_putrecords_and_s3_faults_at_20_percent(fleet: FaultFleet) -> None:
    proxy = fleet.aws_proxy
    injected_before = dict(proxy.injected)

    def during() -> None:
        proxy.configure(
            putrecords_partial=0.2,
            putrecords_throttle=0.2,
            getrecords_throttle=0.2,
            s3_put_error=0.2,
        )

    try:
        # The faults last as long as the generation run; the backlog they leave (ingestion's
        # spool, the consumer's lag) is then delivered without them.
        report = fleet.run_case(
            "PutRecords partial failures, throttling, S3 errors at 20 %",
            seconds=14,
            during=during,
            after_generation=proxy.clear,
        )
    finally:
        proxy.clear()
    injected = {k: v - injected_before.get(k, 0) for k, v in proxy.injected.items()}
    report.notes.append(f"faults injected: {dict(sorted(injected.items()))}")
    print(report.notes[-1])
    for fault in (
        "putrecords_partial_entries",
        "putrecords_throttle",
        "getrecords_throttle",
        "s3_put_error",
    ):
        assert injected.get(fault, 0) > 0, injected
    assert_no_loss_no_duplicates(report)

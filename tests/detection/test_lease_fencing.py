"""The service leases against a real emulator: the hand-over protocol, and the fence that keeps a
process whose lease ran out from writing a service's checkpoint, events or alerts."""

from __future__ import annotations

import threading
import time
from typing import Any

from stages.common import aws
from stages.common.config import Settings
from stages.common.counters import OutcomeCounters
from stages.common.lakehouse import open_catalog
from stages.common.named_lease import NamedLease, read_all
from stages.detection.alerts import OUTBOX_PREFIX
from stages.detection.checkpoint import CheckpointStore
from stages.detection.leases import ServiceLeases
from stages.detection.store import EVENTS_PREFIX
from stages.detection.worker import DetectionWorker
from stages.etl.features import ensure_features_table
from tests.detection.test_leases import SERIES, SPIKED, START, WIDTH, _rows

LEASE_SECONDS = 3.0
LEASE_COUNTERS = ("leases_taken", "leases_stolen", "leases_lost", "leases_released")


def _leases(settings: Settings, owner: str, seconds: float = 5.0) -> ServiceLeases:
    # Counters of their own per owner: two owners live in this one test process.
    counters = OutcomeCounters(f"lease_test_{owner}", LEASE_COUNTERS)
    db = aws.client("dynamodb", settings)
    return ServiceLeases(db, settings.detection_lease_table, owner, seconds, counters)


def _count(counters: OutcomeCounters, name: str) -> int:
    return int(counters.snapshot()[name])


def test_a_busy_holder_hands_services_over_when_asked(settings: Settings) -> None:
    a = _leases(settings, "busy")
    b = _leases(settings, "idle")
    services = [f"svc-{i}" for i in range(4)]
    a.add_services(services)
    a.tick()
    assert sorted(a.owned()) == services  # alone: all of them
    b.add_services(services)
    b.tick()  # nothing free: b asks a for one
    assert b.owned() == {}
    asked = [s for s in read_all(a.db, a.table) if s.wanted_by == "idle"]
    assert len(asked) == 1 and asked[0].owner == "busy"
    a.tick()
    assert a.wanted() == [asked[0].name]
    a.release(asked[0].name)  # what the detection round does after a last checkpoint
    b.tick()
    assert list(b.owned()) == [asked[0].name]
    # Taking the lease cleared the request; b, one service short of a's three, asks again.
    b.tick()
    a.tick()
    (second,) = a.wanted()
    a.release(second)
    b.tick()
    assert sorted(b.owned()) == sorted([asked[0].name, second])
    assert len(a.owned()) == 2
    b.tick()
    a.tick()
    assert a.wanted() == []  # two and two: nobody asks any more
    assert _count(b.counters, "leases_stolen") == 2
    assert _count(a.counters, "leases_released") == 2
    holders = {s.name: (s.owner, s.wanted_by) for s in read_all(a.db, a.table)}
    assert sorted(holders.values()) == [("busy", None)] * 2 + [("idle", None)] * 2


def test_an_expired_lease_is_taken_over_and_its_old_holder_learns_it_lost(
    settings: Settings,
) -> None:
    # Long enough that b's first look comes well inside a's lease on a loaded machine (with 1 s,
    # a CI run's b found it already expired), short enough to wait out.
    a = _leases(settings, "paused", LEASE_SECONDS)
    b = _leases(settings, "live", LEASE_SECONDS)
    a.add_services(["svc"])
    a.tick()
    fence = a.owned()["svc"]
    b.add_services(["svc"])
    b.tick()
    assert b.owned() == {}  # held and renewed: not b's
    time.sleep(LEASE_SECONDS + 0.3)  # a stops renewing (a pause, a crash)
    assert not a.ready("svc", fence)  # a's own clock already says it must not write
    b.tick()
    assert b.owned() == {"svc": fence + 1}
    a.tick()
    assert a.owned() == {} and _count(a.counters, "leases_lost") == 1
    assert _count(b.counters, "leases_taken") == 1


def test_a_round_that_outlives_its_lease_writes_nothing(settings: Settings) -> None:
    """The round reads, the lease runs out (a long pause) and another process takes the
    service: the scoring is discarded, no event, alert or checkpoint is written."""
    settings = settings.model_copy(
        update={
            "detection_series": SERIES,
            "detection_checkpoint_seconds": 0.0,
            "detection_lease_seconds": 2.0,
            "detection_worker_id": "slow",
        }
    )
    s3 = aws.client("s3", settings)
    catalog = open_catalog(settings, name="detection-test")
    table = ensure_features_table(catalog)
    table.append(_rows(0, 120))
    worker = DetectionWorker(settings, s3=s3, sqs=aws.client("sqs", settings), catalog=catalog)
    # Rounds with the leases renewed as in a running service.
    worker.leases.add_services(worker.reader.discover())
    worker.leases.tick()
    lease_thread = threading.Thread(target=worker.leases.run, args=(worker._lease_stop,))
    lease_thread.start()
    worker._lease_thread = lease_thread
    try:
        worker.run_once()  # takes the six services, scores 120 buckets of each, checkpoints
        assert len(worker.adopted) == 6
        store = CheckpointStore(s3, "md-models")
        before = {s: store.load(s) for s in worker.adopted}
        assert all(c is not None and c.mark == START + 119 * WIDTH for c in before.values())
        scored = worker.counters.snapshot()["points_scored"]

        table.append(_rows(120, 140))  # a spike of payment-service: an event would open
        intruder = NamedLease(
            aws.client("dynamodb", settings), settings.detection_lease_table, SPIKED, "other", 30
        )
        read = worker.reader.read

        def paused_read(*args: Any, **kwargs: Any) -> Any:
            found = read(*args, **kwargs)
            # The whole process pauses here: no renewal until another process took over.
            worker._lease_stop.set()
            lease_thread.join()
            deadline = time.monotonic() + 30
            while not intruder.acquire():
                assert time.monotonic() < deadline, "the lease never expired"
                time.sleep(0.2)
            return found

        worker.reader.read = paused_read  # type: ignore[method-assign]
        worker.run_once()
    finally:
        worker._lease_stop.set()
        lease_thread.join()

    counts = worker.counters.snapshot()
    assert counts["points_scored"] - scored == 6 * 20
    assert counts["points_discarded"] == 6 * 20  # none of it was checkpointed
    assert worker.adopted == {}
    for service, saved in before.items():
        after = store.load(service)
        assert after is not None and after.generation == saved.generation  # type: ignore[union-attr]
    listed = s3.list_objects_v2(Bucket="md-models", Prefix=EVENTS_PREFIX)
    assert listed["KeyCount"] == 0
    assert s3.list_objects_v2(Bucket="md-models", Prefix=OUTBOX_PREFIX)["KeyCount"] == 0


def test_a_lease_handed_over_waits_for_the_process_that_asked(settings: Settings) -> None:
    services = ["x-service", "y-service", "z-service"]
    holder = _leases(settings, "holder")
    asker = _leases(settings, "asker")
    bystander = _leases(settings, "bystander")
    for leases in (holder, asker, bystander):
        leases.add_services(services)
    holder.tick()
    asker.tick()  # asks the holder of all three for one
    holder.tick()
    (asked,) = holder.wanted()
    holder.release(asked)
    bystander.tick()  # one short of its share, but the free lease is the asker's
    assert asked not in bystander.owned()
    asker.tick()
    assert list(asker.owned()) == [asked]
    assert _count(asker.counters, "leases_stolen") == 1
    assert _count(bystander.counters, "leases_taken") == 0

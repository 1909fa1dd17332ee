"""A record that raises never stops its shard; a worker that keeps dying or stalls is reported."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
from prometheus_client import REGISTRY

from stages.common.kpl import deaggregate
from stages.consumer import worker as worker_module
from stages.consumer.batcher import FlushLimits
from stages.consumer.leases import InMemoryLeaseStore, Lease
from stages.consumer.reader import KinesisRecord, ReadResult
from stages.consumer.supervision import ShardSupervisor
from stages.consumer.worker import ShardWorker, WorkerConfig

STREAM = "stage01-logs-stream"
ARRIVAL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _worker() -> ShardWorker:
    config = WorkerConfig(
        owner="me",
        bucket="md-raw-logs",
        compression="none",
        limits=FlushLimits(1_000, 1 << 20, 60.0),
        get_records_limit=100,
        poll_interval=0.1,
        max_backoff=0.1,
        dedup_window_records=100,
    )
    lease = Lease(STREAM, "shardId-000000000000", owner="me")
    return ShardWorker(
        lease, config, None, None, InMemoryLeaseStore(), lambda: 0, 512, lambda: None
    )


def _record(sequence: int, data: bytes) -> KinesisRecord:
    return KinesisRecord(str(sequence), ARRIVAL, deaggregate(data, "pk"), len(data))


def _lines(worker: ShardWorker) -> dict[str, list[dict]]:
    return {
        p.prefix: [orjson.loads(line) for line in buf.lines]
        for p, buf in worker.buffer.partitions.items()
    }


def _errors(error: str) -> float:
    labels = {"stream": STREAM, "error": error}
    return REGISTRY.get_sample_value("consumer_record_errors_total", labels) or 0.0


def test_a_record_whose_processing_raises_is_dead_lettered_and_the_next_one_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_route = worker_module.route

    def route(data: bytes, arrival: datetime, stream: str):
        if b"poison" in data:
            raise OverflowError("date value out of range")
        return real_route(data, arrival, stream)

    monkeypatch.setattr(worker_module, "route", route)
    worker = _worker()
    poison = b'{"service": "s", "message": "poison"}'
    good = orjson.dumps({"service": "s", "event_id": "e1", "timestamp": "2025-11-09T13:00:00Z"})
    before = _errors("OverflowError")
    worker._consume(ReadResult([_record(1, poison), _record(2, good)], 0, False))

    lines = _lines(worker)
    assert lines["service=s/year=2025/month=11/day=09/hour=13"] == [orjson.loads(good)]
    dead = lines[f"_dead-letter/stream={STREAM}/year=2026/month=01/day=02/hour=03"]
    assert len(dead) == 1
    assert dead[0]["reason"].startswith("processing failed: OverflowError")
    assert base64.b64decode(dead[0]["data_base64"]) == poison
    assert dead[0]["sequence_number"] == "1"
    assert worker.buffer.dead_letters == 1
    assert worker.buffer.last_sequence == "2"
    assert _errors("OverflowError") == before + 1


def test_a_corrupt_aggregate_is_one_dead_letter_with_the_reason() -> None:
    import aws_kinesis_agg

    worker = _worker()
    bad = aws_kinesis_agg.MAGIC + b"\x0a\x01k" + b"\x00" * 16  # magic + body + wrong MD5
    worker._consume(ReadResult([_record(1, bad)], 0, False))
    (dead,) = _lines(worker).values()
    assert [line["reason"] for line in dead] == ["corrupt KPL aggregate: MD5 checksum mismatch"]
    assert base64.b64decode(dead[0]["data_base64"]) == bad


@dataclass
class FakeWorker:
    key: str = f"{STREAM}:shardId-000000000001"
    stream: str = STREAM
    shard_id: str = "shardId-000000000001"
    checkpoint: str = "100"
    progress_at: float = 0.0
    error: str | None = "ValueError: invalid literal for int()"


def test_a_worker_that_keeps_dying_at_one_checkpoint_is_reported_with_its_reason() -> None:
    supervisor = ShardSupervisor(stall_seconds=60)
    dying = FakeWorker()
    supervisor.worker_died(dying)
    supervisor.worker_died(dying)
    assert supervisor.problems([], now=1.0) == []  # a restart or two is not yet a failure
    supervisor.worker_died(dying)
    (reason,) = supervisor.problems([], now=1.0)
    assert STREAM in reason and "shardId-000000000001" in reason
    assert "died 3 times" in reason and "ValueError" in reason

    # A new worker that moves the checkpoint clears it; one that does not keeps it.
    supervisor.observe(FakeWorker(checkpoint="100", progress_at=1.0))
    assert supervisor.problems([], now=1.0)
    supervisor.observe(FakeWorker(checkpoint="101", progress_at=1.0))
    assert supervisor.problems([], now=1.0) == []


def test_deaths_at_different_checkpoints_are_not_a_failing_shard() -> None:
    supervisor = ShardSupervisor(stall_seconds=60)
    for checkpoint in ("1", "2", "3", "4"):
        supervisor.worker_died(FakeWorker(checkpoint=checkpoint))
    assert supervisor.problems([], now=1.0) == []


def test_a_shard_given_away_is_forgotten() -> None:
    supervisor = ShardSupervisor(stall_seconds=60)
    for _ in range(3):
        supervisor.worker_died(FakeWorker())
    supervisor.retain({f"{STREAM}:shardId-000000000000"})
    assert supervisor.problems([], now=1.0) == []


def test_a_worker_without_progress_for_the_stall_time_is_reported() -> None:
    supervisor = ShardSupervisor(stall_seconds=30)
    live = FakeWorker(progress_at=100.0, error=None)
    assert supervisor.problems([live], now=129.0) == []
    (reason,) = supervisor.problems([live], now=131.0)
    assert "stream stage01-logs-stream shard shardId-000000000001" in reason
    assert "no progress for 31 s" in reason


def test_a_shard_that_keeps_dying_is_restarted_after_a_growing_pause() -> None:
    supervisor = ShardSupervisor(stall_seconds=60, max_restart_delay=3.0)
    key = FakeWorker().key
    supervisor.worker_died(FakeWorker(), now=10.0)
    assert supervisor.may_restart(key, now=10.0)  # the first restart is immediate
    waits = []
    for death in range(2, 8):
        died_at = 100.0 * death
        supervisor.worker_died(FakeWorker(), now=died_at)
        wait = next(
            w / 100 for w in range(0, 1000) if supervisor.may_restart(key, died_at + w / 100)
        )
        waits.append(wait)
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    # A shard that moved on restarts at once again.
    supervisor.observe(FakeWorker(checkpoint="200"))
    assert supervisor.may_restart(key, now=700.0)

"""Crash and stop at every step of a flush: nothing lost, nothing written twice.

Each case runs real consumer processes against one emulator (shared by the module, reset per
case). A first consumer flushes one range cleanly, then stops at a named step of its second
flush (``CONSUMER_FAULT_PAUSE_AT``, see stages/consumer/faults.py) and gets SIGKILL or SIGTERM
there. For the ``replay`` step that consumer is killed between two uploads, and a second one is
stopped while it reads the unfinished range back. A last consumer, possibly with other flush
settings, finishes the shard. Then every object in the bucket is read: each event_id once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stages.common import aws
from stages.common.config import Settings
from stages.common.lake import list_objects
from stages.consumer.leases import DynamoLeaseStore
from tests.support.fault_proxy import FaultProxy
from tests.support.lake import (
    ConsumerProcess,
    assert_exactly_once,
    make_record,
    put_plain,
    read_bucket,
    wait_for_lines,
)
from tests.support.processes import Process, start_emulator

LOGS = "stage01-logs-stream"
BUCKET = "md-raw-logs"
FIRST_FLUSH = 30  # records per flush of the first consumer (FLUSH_MAX_RECORDS)
WINDOW_ON = {"DEDUP_WINDOW_RECORDS": "1000"}
WINDOW_OFF = {"DEDUP_WINDOW_RECORDS": "0"}


@dataclass(frozen=True)
class Case:
    step: str  # where the stopped consumer is: a flush step, or "replay"
    sig: signal.Signals
    before: dict[str, str] = field(default_factory=dict)  # settings of the stopped consumer
    after: dict[str, str] = field(default_factory=dict)  # settings after the restart

    @property
    def window_before(self) -> bool:
        return self.before.get("DEDUP_WINDOW_RECORDS") != "0"


CASES = {
    "before-upload-kill": Case("before_upload", signal.SIGKILL, WINDOW_ON, WINDOW_ON),
    "before-upload-term": Case("before_upload", signal.SIGTERM, WINDOW_OFF, WINDOW_OFF),
    "between-uploads-kill-fewer-records": Case(
        "between_uploads", signal.SIGKILL, WINDOW_ON, {**WINDOW_ON, "FLUSH_MAX_RECORDS": "7"}
    ),
    "between-uploads-kill-gzip": Case(
        "between_uploads", signal.SIGKILL, WINDOW_OFF, {**WINDOW_OFF, "COMPRESSION": "gzip"}
    ),
    "between-uploads-kill-fewer-bytes": Case(
        "between_uploads", signal.SIGKILL, WINDOW_ON, {**WINDOW_ON, "FLUSH_MAX_BYTES": "2048"}
    ),
    "between-uploads-term": Case("between_uploads", signal.SIGTERM, WINDOW_ON, WINDOW_ON),
    "before-checkpoint-kill-window-off": Case(
        "before_checkpoint", signal.SIGKILL, WINDOW_ON, WINDOW_OFF
    ),
    "before-checkpoint-term-window-off-more-records": Case(
        "before_checkpoint", signal.SIGTERM, WINDOW_ON, {**WINDOW_OFF, "FLUSH_MAX_RECORDS": "45"}
    ),
    "before-checkpoint-kill-window-on-no-gzip": Case(
        "before_checkpoint",
        signal.SIGKILL,
        {**WINDOW_OFF, "COMPRESSION": "gzip"},
        {**WINDOW_ON, "COMPRESSION": "none"},
    ),
    "replay-kill-fewer-records": Case(
        "replay", signal.SIGKILL, WINDOW_ON, {**WINDOW_ON, "FLUSH_MAX_RECORDS": "7"}
    ),
    "replay-term": Case("replay", signal.SIGTERM, WINDOW_ON, WINDOW_ON),
    "replay-term-window-off-gzip": Case(
        "replay", signal.SIGTERM, WINDOW_OFF, {**WINDOW_OFF, "COMPRESSION": "gzip"}
    ),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One emulator for the whole matrix: starting one per case would dominate its run time."""
    logs = tmp_path_factory.mktemp("crash-matrix-logs")
    proc, endpoint = start_emulator(logs)
    yield endpoint, logs
    proc.stop()


def _reset(settings: Settings) -> None:
    """An empty one-shard logs stream, no leases, an empty bucket."""
    kinesis = aws.client("kinesis", settings)
    kinesis.delete_stream(StreamName=LOGS, EnforceConsumerDeletion=True)
    kinesis.create_stream(StreamName=LOGS, ShardCount=1)
    dynamodb = aws.client("dynamodb", settings)
    for item in dynamodb.scan(TableName=settings.lease_table).get("Items", []):
        dynamodb.delete_item(TableName=settings.lease_table, Key={"lease_key": item["lease_key"]})
    s3 = aws.client("s3", settings)
    for obj in list(list_objects(s3, BUCKET)):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])


def _consumer(endpoint: str, logs: Path, settings: dict[str, str], **extra: str) -> Any:
    env = {
        "CONSUMER_STREAMS": "logs",
        "LEASE_DURATION_SECONDS": "1",
        "SHARD_SYNC_INTERVAL_SECONDS": "1",
        "CONSUMER_MAX_BACKOFF_SECONDS": "0.2",
        "FLUSH_MAX_AGE_SECONDS": "60",  # only the count and the stop cut ranges here
        "FLUSH_MAX_RECORDS": str(FIRST_FLUSH),
        **settings,
        **extra,
    }
    consumer = ConsumerProcess(endpoint, logs, **env)
    consumer.wait_healthy()
    return consumer


def _wait_for_log(proc: Process, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log_path.read_text(errors="replace"):
        assert proc.alive(), f"{proc.name} exited before '{text}':\n{proc.log_tail()}"
        assert time.monotonic() < deadline, f"no '{text}' in {proc.name}:\n{proc.log_tail()}"
        time.sleep(0.05)


def _wait_until_read(s3: Any, consumer: Any, expected: int, timeout: float = 30.0) -> None:
    """Until the lake and the consumer's buffer hold ``expected`` records between them."""
    deadline = time.monotonic() + timeout
    while True:
        held = len(read_bucket(s3, BUCKET)) + consumer.metric("consumer_buffered_records")
        if held >= expected:
            return
        assert time.monotonic() < deadline, f"{held} of {expected} read\n{consumer.log_tail()}"
        time.sleep(0.2)


def _stop(proc: Process, sig: signal.Signals) -> None:
    if sig == signal.SIGKILL:
        proc.kill()
    else:
        assert proc.terminate(timeout=30) == 0, proc.log_tail()


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_stop_at_any_step_of_a_flush_loses_and_duplicates_nothing(
    shared: tuple[str, Path], case: Case
) -> None:
    endpoint, logs = shared
    settings = Settings(aws_endpoint_url=endpoint)
    _reset(settings)
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    # One hour, five services: each flush writes five objects.
    sent = [make_record(i, hours=1) for i in range(2 * FIRST_FLUSH + 10)]
    first, second, third = sent[:FIRST_FLUSH], sent[FIRST_FLUSH : 2 * FIRST_FLUSH], sent[60:]
    # Re-sent copies inside the interrupted range: the window drops them, and its replay must
    # decide as the first reader did even when the window is switched off in between.
    copies = first[:3] if case.window_before else []
    crash_step = "between_uploads" if case.step == "replay" else case.step
    consumers: list[Process] = []
    try:
        consumers.append(
            _consumer(endpoint, logs, case.before, CONSUMER_FAULT_PAUSE_AT=f"{crash_step}:2")
        )
        put_plain(kinesis, LOGS, first)
        wait_for_lines(s3, BUCKET, len(first), timeout=30, proc=consumers[-1])
        put_plain(kinesis, LOGS, second[:15] + copies + second[15:])
        _wait_for_log(consumers[-1], f"paused at {crash_step}")
        if case.step == "replay":
            _stop(consumers[-1], signal.SIGKILL)
            # Small reads, so that the replaying consumer is stopped inside the pending range.
            consumers.append(
                _consumer(
                    endpoint,
                    logs,
                    case.after,
                    GET_RECORDS_LIMIT="4",
                    CONSUMER_FAULT_PAUSE_AT="replay",
                )
            )
            _wait_for_log(consumers[-1], "paused at replay")
        _stop(consumers[-1], case.sig)
        store = DynamoLeaseStore(aws.client("dynamodb", settings), settings.lease_table)
        if case.sig == signal.SIGTERM:
            # A stop finishes the flush (or the replayed range) it is in, whole.
            (lease,) = store.list()
            assert lease.pending_end is None and lease.owner is None, lease

        consumers.append(_consumer(endpoint, logs, case.after))
        put_plain(kinesis, LOGS, third)
        _wait_until_read(s3, consumers[-1], len(sent))
        # A stop flushes what is buffered: afterwards the lake holds everything that will be.
        assert consumers[-1].terminate(timeout=30) == 0, consumers[-1].log_tail()
        assert_exactly_once(read_bucket(s3, BUCKET), sent)
        (lease,) = store.list()
        assert lease.pending_end is None and lease.owner is None
    finally:
        for consumer in consumers:
            consumer.stop()


def test_a_stop_during_a_replay_that_cannot_finish_leaves_the_range_pending(
    shared: tuple[str, Path],
) -> None:
    """SIGTERM inside a pending range while GetRecords fails: nothing of the range is written
    under other names; the lease keeps it pending and the next owner replays it."""
    endpoint, logs = shared
    settings = Settings(aws_endpoint_url=endpoint)
    _reset(settings)
    kinesis = aws.client("kinesis", settings)
    s3 = aws.client("s3", settings)
    store = DynamoLeaseStore(aws.client("dynamodb", settings), settings.lease_table)
    sent = [make_record(i, hours=1) for i in range(2 * FIRST_FLUSH + 10)]
    consumers: list[Process] = []
    with FaultProxy(endpoint, seed=11) as proxy:
        try:
            consumers.append(
                _consumer(endpoint, logs, WINDOW_ON, CONSUMER_FAULT_PAUSE_AT="between_uploads:2")
            )
            put_plain(kinesis, LOGS, sent[:FIRST_FLUSH])
            wait_for_lines(s3, BUCKET, FIRST_FLUSH, timeout=30, proc=consumers[-1])
            put_plain(kinesis, LOGS, sent[FIRST_FLUSH : 2 * FIRST_FLUSH])
            _wait_for_log(consumers[-1], "paused at between_uploads")
            _stop(consumers[-1], signal.SIGKILL)
            (crashed,) = store.list()
            assert crashed.pending_end is not None
            uploaded = {line.key for line in read_bucket(s3, BUCKET)}

            consumers.append(
                _consumer(
                    proxy.url,
                    logs,
                    WINDOW_ON,
                    GET_RECORDS_LIMIT="4",
                    CONSUMER_FAULT_PAUSE_AT="replay",
                )
            )
            _wait_for_log(consumers[-1], "paused at replay")
            proxy.configure(getrecords_throttle=1.0)
            _stop(consumers[-1], signal.SIGTERM)
            (left,) = store.list()
            assert left.pending_end == crashed.pending_end and left.owner is None
            assert {line.key for line in read_bucket(s3, BUCKET)} == uploaded
            assert "left for the next owner" in consumers[-1].log_path.read_text()
            proxy.clear()

            consumers.append(_consumer(endpoint, logs, WINDOW_ON))
            put_plain(kinesis, LOGS, sent[2 * FIRST_FLUSH :])
            _wait_until_read(s3, consumers[-1], len(sent))
            assert consumers[-1].terminate(timeout=30) == 0, consumers[-1].log_tail()
            assert_exactly_once(read_bucket(s3, BUCKET), sent)
        finally:
            for consumer in consumers:
                consumer.stop()

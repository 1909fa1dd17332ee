"""The Ingestion Interface's queue to Log Consolidation: bounded in bytes, every batch counted."""

from __future__ import annotations

import threading
import time

import httpx
import orjson

from stages.common.counters import OutcomeCounters
from stages.ingestion.fanout import ingestion_counters
from stages.ingestion.forward import ConsolidationForwarder


def lines(n: int, size: int = 100) -> list[bytes]:
    return [orjson.dumps({"i": i, "pad": "x" * size}) + b"\n" for i in range(n)]


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Consolidation:
    """Stands in for Log Consolidation's /api/logs/batch: records what it got, can be held."""

    def __init__(self, *, fail_with: Exception | None = None) -> None:
        self.bodies: list[bytes] = []
        self.release = threading.Event()
        self.fail_with = fail_with

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.release.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        self.bodies.append(request.content)
        return httpx.Response(200, json={"accepted": 1})


def forwarder(
    handler: Consolidation, queue_bytes: int
) -> tuple[ConsolidationForwarder, OutcomeCounters]:
    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://consolidation")
    counters = ingestion_counters()
    return ConsolidationForwarder(client, counters, queue_bytes=queue_bytes), counters


def test_bodies_are_the_lines_as_one_json_batch_and_the_budget_is_given_back() -> None:
    handler = Consolidation()
    fwd, _ = forwarder(handler, queue_bytes=5_000)
    sent = lines(10)
    assert fwd.offer(sent)
    assert fwd.queued_bytes() > 1_000
    handler.release.set()
    wait_for(lambda: fwd.queued_bytes() == 0)
    assert orjson.loads(handler.bodies[0]) == {"records": [orjson.loads(line) for line in sent]}
    fwd.close()


def test_a_full_queue_drops_and_counts_but_an_empty_one_takes_an_oversized_batch() -> None:
    handler = Consolidation()
    fwd, counters = forwarder(handler, queue_bytes=2_000)
    assert fwd.offer(lines(50))  # ~6 KB, over the budget, but nothing is queued
    assert not fwd.offer(lines(3))  # now the queue is over its budget
    assert counters.snapshot()["consolidation_dropped"] == 3
    handler.release.set()
    wait_for(lambda: counters.snapshot()["consolidation_delivered"] == 50)
    assert fwd.offer(lines(3))
    wait_for(lambda: counters.snapshot()["consolidation_delivered"] == 53)
    fwd.close()
    assert not fwd.offer(lines(4))  # after close: refused and counted, not queued forever
    assert counters.snapshot()["consolidation_dropped"] == 7


def test_an_unexpected_error_fails_the_batch_not_the_forwarder() -> None:
    handler = Consolidation(fail_with=RuntimeError("client closed"))
    handler.release.set()
    fwd, counters = forwarder(handler, queue_bytes=100_000)
    assert fwd.offer(lines(5))
    wait_for(lambda: counters.snapshot()["consolidation_failed"] == 5)
    wait_for(lambda: fwd.queued_bytes() == 0)
    handler.fail_with = None
    assert fwd.offer(lines(2))
    wait_for(lambda: counters.snapshot()["consolidation_delivered"] == 2)
    fwd.close()

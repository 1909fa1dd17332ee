"""The queue-and-thread POST sender shared by the Ingestion Interface (to Log Consolidation) and
Log Consolidation (to an OTLP collector): retries, refusals, bounds, and every record counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from stages.common.background_post import BackgroundPoster, OutcomeNames
from stages.common.counters import OutcomeCounters

NAMES = OutcomeNames(
    delivered="test_post_delivered",
    retried="test_post_retried",
    failed="test_post_failed",
    dropped="test_post_dropped",
)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Peer:
    """Answers with the given statuses in turn (then 200), recording what it got and when."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.bodies: list[bytes] = []
        self.times: list[float] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.release.wait(10)
        self.bodies.append(request.content)
        self.times.append(time.monotonic())
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, text="busy" if status >= 300 else "ok", headers=self.headers)


def poster(peer: Peer, **options: object) -> tuple[BackgroundPoster, OutcomeCounters]:
    client = httpx.Client(transport=httpx.MockTransport(peer), base_url="http://peer")
    counters = OutcomeCounters(
        "test_post", [NAMES.delivered, NAMES.retried, NAMES.failed, NAMES.dropped]
    )
    options = {"backoff_seconds": 0.01, "name": "test-post"} | options
    return BackgroundPoster(client, "/in", counters, NAMES, **options), counters  # type: ignore[arg-type]


def test_a_failed_post_is_retried_with_the_same_body_until_delivered() -> None:
    peer = Peer(503, 500)
    sender, counters = poster(peer, attempts=3)
    assert sender.offer(b"batch-1", 4)
    wait_for(lambda: counters.snapshot()[NAMES.delivered] == 4)
    assert peer.bodies == [b"batch-1"] * 3
    assert counters.snapshot()[NAMES.retried] == 8  # two more attempts of 4 records
    assert counters.snapshot()[NAMES.failed] == 0
    assert sender.reachable() is True
    sender.close()


def test_out_of_attempts_the_batch_is_counted_as_failed() -> None:
    peer = Peer(503, 503, 503)
    sender, counters = poster(peer, attempts=3)
    assert sender.offer(b"x", 2)
    wait_for(lambda: counters.snapshot()[NAMES.failed] == 2)
    assert len(peer.bodies) == 3
    assert sender.reachable() is False
    sender.close()


def test_an_answer_the_peer_would_repeat_is_not_retried() -> None:
    peer = Peer(422)
    sender, counters = poster(peer, attempts=5)
    assert sender.offer(b"bad", 3)
    wait_for(lambda: counters.snapshot()[NAMES.failed] == 3)
    assert len(peer.bodies) == 1 and counters.snapshot()[NAMES.retried] == 0
    # The caller says which answers are worth another attempt (OTLP: 429, 502, 503, 504).
    peer = Peer(500)
    otlp_like, counters = poster(peer, attempts=5, retryable={429, 502, 503, 504}.__contains__)
    assert otlp_like.offer(b"x", 1)
    wait_for(lambda: counters.snapshot()[NAMES.failed] == 1)
    assert len(peer.bodies) == 1
    sender.close()
    otlp_like.close()


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    peer = Peer(429, headers={"Retry-After": "0.3"})
    sender, counters = poster(peer, attempts=2, max_backoff_seconds=1.0)
    assert sender.offer(b"x", 1)
    wait_for(lambda: counters.snapshot()[NAMES.delivered] == 1)
    assert peer.times[1] - peer.times[0] >= 0.3
    peer = Peer(429, headers={"Retry-After": "3600"})
    capped, counters = poster(peer, attempts=2, max_backoff_seconds=0.2)
    assert capped.offer(b"x", 1)
    wait_for(lambda: counters.snapshot()[NAMES.delivered] == 1)
    assert 0.2 <= peer.times[1] - peer.times[0] < 2.0
    sender.close()
    capped.close()


def test_a_full_queue_drops_and_counts_by_batches_or_bytes() -> None:
    peer = Peer()
    peer.release.clear()  # the first batch is held in flight; the rest wait in the queue
    by_batches, counters = poster(peer, max_batches=2)
    assert by_batches.offer(b"first", 1)
    wait_for(lambda: by_batches.queued_batches() == 1 and len(peer.bodies) == 0)
    assert by_batches.offer(b"second", 1)
    assert not by_batches.offer(b"third", 5)
    assert counters.snapshot()[NAMES.dropped] == 5
    peer.release.set()
    wait_for(lambda: counters.snapshot()[NAMES.delivered] == 2)
    assert by_batches.queued_batches() == 0 and by_batches.queued_bytes() == 0
    by_batches.close()

    peer = Peer()
    peer.release.clear()
    by_bytes, counters = poster(peer, max_bytes=100)
    assert by_bytes.offer(b"x" * 500, 1)  # an empty queue takes a body over the budget
    assert not by_bytes.offer(b"y", 2)
    assert counters.snapshot()[NAMES.dropped] == 2
    peer.release.set()
    wait_for(lambda: counters.snapshot()[NAMES.delivered] == 1)
    by_bytes.close()


def test_close_counts_what_was_never_sent_as_dropped() -> None:
    peer = Peer()
    peer.release.clear()
    sender, counters = poster(peer)
    for i in range(4):
        assert sender.offer(b"b%d" % i, 10)
    threading.Timer(0.2, peer.release.set).start()
    sender.close(timeout=5)
    snapshot = counters.snapshot()
    assert snapshot[NAMES.delivered] == 10  # the batch in flight finished
    assert snapshot[NAMES.dropped] == 30
    assert not sender.offer(b"late", 7)
    assert counters.snapshot()[NAMES.dropped] == 37

"""The orchestrator's synthesis client: how long it waits between attempts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from stages.orchestrator.clients import (
    MAX_RETRY_DELAY_SECONDS,
    SYNTHESIS_ATTEMPTS,
    SynthesisClient,
    SynthesisRequest,
)


class RecordingStop(threading.Event):
    """A stop event that never fires and notes each wait instead of sleeping through it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        return False


def _synthesize(answers: list[httpx.Response | Exception]) -> tuple[int, list[float]]:
    pending = iter(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        answer = next(pending)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = SynthesisClient(
        httpx.Client(base_url="http://synthesis", transport=httpx.MockTransport(handle))
    )
    stop = RecordingStop()
    request = SynthesisRequest(count=10, seed=1, timestamp=datetime.now(UTC), spread_seconds=1)
    outcome = client.synthesize(request, stop)
    return outcome.produced, stop.waits


def _busy(retry_after: str) -> httpx.Response:
    return httpx.Response(503, json={"error": "busy"}, headers={"Retry-After": retry_after})


DONE = httpx.Response(200, json={"count": 10})


@pytest.mark.parametrize(("header", "wait"), [("0.5", 0.5), ("30", MAX_RETRY_DELAY_SECONDS)])
def test_retry_after_in_seconds_is_honoured_within_the_cap(header: str, wait: float) -> None:
    assert _synthesize([_busy(header), DONE]) == (10, [wait])


def test_retry_after_as_an_http_date_is_honoured_within_the_cap() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert _synthesize([_busy(soon), DONE]) == (10, [MAX_RETRY_DELAY_SECONDS])


@pytest.mark.parametrize("header", ["-3", "soon", ""])
def test_a_bad_retry_after_waits_one_second(header: str) -> None:
    assert _synthesize([_busy(header), DONE]) == (10, [1.0])


def test_unreachable_synthesis_backs_off_within_the_shared_bounds() -> None:
    refused = httpx.ConnectError("refused")
    produced, waits = _synthesize([refused] * SYNTHESIS_ATTEMPTS)
    assert produced == 0
    assert len(waits) == SYNTHESIS_ATTEMPTS - 1
    for retry, wait in enumerate(waits):
        assert 0 <= wait <= min(MAX_RETRY_DELAY_SECONDS, 0.2 * 2**retry)

"""The forwarder against a fake ingestion: chunks, retries, the budget, rejections."""

from __future__ import annotations

import json

import httpx
import pytest

from stages.synthesis.errors import IngestionRejected, IngestionUnavailable
from stages.synthesis.forward import RETRY_BUDGET_SECONDS, Forwarder


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _forwarder(answers: list[object], seen: list[int]) -> tuple[Forwarder, FakeClock]:
    """Ingestion answers from ``answers`` in turn (status, or an exception to raise)."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if answer == 200:
            seen.append(len(json.loads(request.content)["records"]))
            return httpx.Response(200, json={"accepted": seen[-1]})
        return httpx.Response(int(str(answer)), headers={"Retry-After": "1"}, text="busy")

    clock = FakeClock()
    client = httpx.Client(base_url="http://ingestion", transport=httpx.MockTransport(handle))
    return Forwarder(client, sleep=clock.sleep, clock=lambda: clock.now), clock


RECORDS = [{"event_id": f"e{i}"} for i in range(1100)]


def test_chunks_and_retries_then_succeeds() -> None:
    seen: list[int] = []
    refused = httpx.ConnectError("refused")
    forwarder, clock = _forwarder([503, refused, 200, 200, 503, 200], seen)
    assert forwarder.forward(RECORDS) == 1100
    assert seen == [500, 500, 100]
    assert clock.sleeps[0] == 1.0  # honours Retry-After
    assert len(clock.sleeps) == 3


def test_gives_up_after_the_budget_with_the_count_so_far() -> None:
    seen: list[int] = []
    forwarder, clock = _forwarder([200, 503], seen)
    with pytest.raises(IngestionUnavailable) as raised:
        forwarder.forward(RECORDS)
    assert raised.value.forwarded == 500
    assert raised.value.detail == {"forwarded": 500, "total": 1100}
    assert raised.value.headers["Retry-After"] == "1"
    assert 4 <= clock.now <= RETRY_BUDGET_SECONDS


def test_invalid_records_are_not_retried() -> None:
    forwarder, clock = _forwarder([422], [])
    with pytest.raises(IngestionRejected) as raised:
        forwarder.forward(RECORDS)
    assert raised.value.detail["ingestion_status"] == 422
    assert clock.sleeps == []

"""The forwarder against a fake ingestion: chunks, retries, the budget, rejections."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

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


def _forwarder(
    answers: list[object], seen: list[int], max_in_flight: int = 1
) -> tuple[Forwarder, FakeClock]:
    """Ingestion answers from ``answers`` in turn (status, or an exception to raise).

    One chunk at a time by default, so the answers meet the chunks in a known order."""

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
    forwarder = Forwarder(
        client, sleep=clock.sleep, clock=lambda: clock.now, max_in_flight=max_in_flight
    )
    return forwarder, clock


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


def test_chunks_in_flight_together_all_arrive() -> None:
    seen: list[int] = []
    forwarder, _ = _forwarder([200], seen, max_in_flight=4)
    try:
        assert forwarder.forward(RECORDS * 3) == 3300
    finally:
        forwarder.close()
    assert sorted(seen) == [300] + [500] * 6


def test_concurrent_chunks_report_exactly_what_was_accepted() -> None:
    """Ingestion refuses one chunk: the 503 counts only the chunks it accepted."""
    accepted: list[int] = []
    lock = threading.Lock()

    def handle(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["records"]
        if records[0]["event_id"] == "e500":  # the second chunk is never accepted
            return httpx.Response(503, headers={"Retry-After": "1"}, text="busy")
        with lock:
            accepted.append(len(records))
        return httpx.Response(200, json={"accepted": len(records)})

    client = httpx.Client(base_url="http://ingestion", transport=httpx.MockTransport(handle))
    forwarder = Forwarder(client, budget_seconds=0.3, max_in_flight=4)
    try:
        with pytest.raises(IngestionUnavailable) as raised:
            forwarder.forward(RECORDS)
    finally:
        forwarder.close()
    assert raised.value.forwarded == sum(accepted)
    assert raised.value.detail == {"forwarded": sum(accepted), "total": 1100}


def test_a_chunk_is_not_sent_once_the_request_budget_ran_out() -> None:
    """The budget runs from when the request arrived (a keyed retry may have waited for its
    key): past it a chunk is not sent at all, so it is known not to be in ingestion."""
    seen: list[int] = []
    forwarder, clock = _forwarder([200], seen)
    clock.now = 100.0
    accepted, error = forwarder.forward_some(RECORDS, started=100.0 - RETRY_BUDGET_SECONDS - 0.1)
    assert accepted == [] and seen == []
    assert isinstance(error, IngestionUnavailable) and "budget ran out" in error.message
    accepted, error = forwarder.forward_some(RECORDS, started=100.0 - 1)
    assert error is None and len(accepted) == 1100 and seen == [500, 500, 100]


def _per_record_answer(records: list[dict[str, object]], taken: set[str]) -> dict[str, object]:
    """Ingestion's answer: ``taken`` ids accepted, the others to retry (as a full spool does)."""
    results = [
        {"index": i, "event_id": r["event_id"], "status": "accepted"}
        if r["event_id"] in taken
        else {"index": i, "event_id": r["event_id"], "status": "retry", "error": "spool full"}
        for i, r in enumerate(records)
    ]
    retry = sum(1 for r in results if r["status"] == "retry")
    return {"accepted": len(records) - retry, "retry": retry, "results": results}


def test_a_partial_503_is_retried_with_exactly_the_records_not_accepted() -> None:
    """Ingestion accepted part of a chunk before answering 503: the retry sends the rest only,
    and the count is of records, not chunks."""
    posted: list[list[str]] = []
    taken: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["records"]
        posted.append([r["event_id"] for r in records])
        if len(posted) == 1:  # every other record of the first chunk gets in
            half = {r["event_id"] for r in records[::2]}
            taken.extend(half)
            body = {"error": "unavailable", "message": "spool full"}
            body["detail"] = _per_record_answer(records, half)
            return httpx.Response(503, headers={"Retry-After": "1"}, json=body)
        taken.extend(r["event_id"] for r in records)
        return httpx.Response(200, json=_per_record_answer(records, set(posted[-1])))

    clock = FakeClock()
    client = httpx.Client(base_url="http://ingestion", transport=httpx.MockTransport(handle))
    forwarder = Forwarder(client, sleep=clock.sleep, clock=lambda: clock.now, max_in_flight=1)
    assert forwarder.forward(RECORDS) == 1100
    assert posted[1] == [f"e{i}" for i in range(1, 500, 2)]  # the 250 the 503 named
    assert sorted(taken) == sorted(r["event_id"] for r in RECORDS)  # each accepted once


def test_a_partial_503_then_giving_up_counts_the_records_in() -> None:
    attempts: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["records"]
        attempts.append(len(records))
        first = {r["event_id"] for r in records[:100]} if len(attempts) == 1 else set()
        body = {"error": "unavailable", "message": "spool full"}
        body["detail"] = _per_record_answer(records, first)
        return httpx.Response(503, headers={"Retry-After": "1"}, json=body)

    clock = FakeClock()
    client = httpx.Client(base_url="http://ingestion", transport=httpx.MockTransport(handle))
    forwarder = Forwarder(client, sleep=clock.sleep, clock=lambda: clock.now, max_in_flight=1)
    with pytest.raises(IngestionUnavailable) as raised:
        forwarder.forward(RECORDS[:500])
    assert raised.value.detail == {"forwarded": 100, "total": 500}
    assert attempts[0] == 500 and set(attempts[1:]) == {400}


def test_records_a_200_rejects_are_not_counted_as_forwarded() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["records"]
        answer = _per_record_answer(records, {r["event_id"] for r in records})
        answer["results"][3] = {"index": 3, "event_id": "e3", "status": "rejected", "error": "x"}
        return httpx.Response(200, json=answer)

    client = httpx.Client(base_url="http://ingestion", transport=httpx.MockTransport(handle))
    forwarder = Forwarder(client, max_in_flight=1)
    accepted, error = forwarder.forward_some(RECORDS[:10])
    assert isinstance(error, IngestionRejected) and error.records == [RECORDS[3]]
    assert accepted == RECORDS[:3] + RECORDS[4:10]


def test_honours_retry_after_as_an_http_date() -> None:
    # RFC 9110 lets a proxy or load balancer in front of ingestion send a date instead of seconds.
    answers = iter([503, 200])

    def handle(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status == 200:
            return httpx.Response(
                200, json={"accepted": len(json.loads(request.content)["records"])}
            )
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
        return httpx.Response(503, headers={"Retry-After": when}, text="busy")

    clock = FakeClock()
    client = httpx.Client(base_url="http://ingestion", transport=httpx.MockTransport(handle))
    forwarder = Forwarder(client, sleep=clock.sleep, clock=lambda: clock.now, max_in_flight=1)
    assert forwarder.forward(RECORDS[:10]) == 10
    assert len(clock.sleeps) == 1
    # The date has whole seconds, so up to one second of the three is lost to rounding.
    assert 1.9 <= clock.sleeps[0] <= 3.0

"""The producer's reading of a PutRecords answer ("classify") and its decisions ("settle"), one
class of answer at a time; the end-to-end behaviour is in test_producer.py."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from stages.ingestion.producer import PutFailed, PutResult
from stages.ingestion.producer.batching import Entry
from stages.ingestion.producer.outcomes import (
    classify_error,
    classify_response,
    settle,
)


def _entries(count: int, *, aggregated: bool = False) -> list[Entry]:
    return [
        Entry(
            b"data", f"pk{i}", 7 if aggregated else None, 7, 10, [("pk", b"pk", b"d", 3, None, i)]
        )  # type: ignore[list-item]
        for i in range(count)
    ]


def _client_error(code: str, message: str = "no") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "PutRecords")


def test_a_fully_acknowledged_call_is_ok_with_each_position() -> None:
    entries = _entries(2, aggregated=True)[:1] + _entries(1)
    response = {
        "Records": [
            {"ShardId": "shardId-000000000001", "SequenceNumber": "11"},
            {"ShardId": "shardId-000000000001", "SequenceNumber": "12"},
        ]
    }
    outcome = classify_response(entries, response, "shardId-000000000001")
    assert outcome.result() == "ok"
    assert [r for _, r in outcome.acked] == [
        PutResult("shardId-000000000001", "11"),
        PutResult("shardId-000000000001", "12"),
    ]
    assert outcome.acked_kinesis_records() == (1, 1)
    assert not outcome.stale_map


def test_a_record_on_an_unexpected_shard_marks_the_map_stale() -> None:
    response = {"Records": [{"ShardId": "shardId-000000000009", "SequenceNumber": "1"}]}
    assert classify_response(_entries(1), response, "shardId-000000000001").stale_map
    # Without a shard map every shard is expected.
    assert not classify_response(_entries(1), response, None).stale_map


def test_a_partial_failure_sorts_entries_into_retryable_and_fatal() -> None:
    entries = _entries(3)
    response = {
        "Records": [
            {"ShardId": "s", "SequenceNumber": "1"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"},
            {"ErrorCode": "KMSAccessDeniedException", "ErrorMessage": "denied"},
        ]
    }
    outcome = classify_response(entries, response, None)
    assert outcome.result() == "partial"
    assert [e for e, _ in outcome.acked] == [entries[0]]
    assert outcome.failed == [(entries[1], "ProvisionedThroughputExceededException", "slow")]
    assert outcome.fatal == [(entries[2], "KMSAccessDeniedException", "denied")]
    assert outcome.throttled_entries() == 1
    assert outcome.call_error is None


def test_a_response_with_the_wrong_number_of_results_retries_every_entry() -> None:
    entries = _entries(2)
    outcome = classify_response(
        entries, {"Records": [{"ShardId": "s", "SequenceNumber": "1"}]}, None
    )
    assert outcome.result() == "error"
    assert outcome.call_error == "MalformedResponse"
    assert [(e, code, msg) for e, code, msg in outcome.failed] == [
        (entries[0], "MalformedResponse", "1 results for 2 records"),
        (entries[1], "MalformedResponse", "1 results for 2 records"),
    ]


def test_a_throttled_call_is_retried_and_counted_once() -> None:
    outcome = classify_error(_entries(3), _client_error("ThrottlingException", "rate"))
    assert outcome.result() == "error"
    assert outcome.call_throttled
    assert len(outcome.failed) == 3 and not outcome.fatal
    assert outcome.throttled_entries() == 0  # the call is the one throttling answer
    assert not outcome.stale_map


def test_call_errors_that_cannot_succeed_are_fatal() -> None:
    outcome = classify_error(_entries(2), _client_error("AccessDeniedException"))
    assert len(outcome.fatal) == 2 and not outcome.failed
    invalid = classify_error(_entries(1), _client_error("InvalidArgumentException"))
    assert invalid.fatal and invalid.stale_map
    params = classify_error(_entries(1), ParamValidationError(report="bad"))
    assert params.call_error == "ParamValidationError" and params.fatal


def test_a_lost_stream_or_connection_is_retried_with_a_fresh_shard_map() -> None:
    missing = classify_error(_entries(1), _client_error("ResourceNotFoundException"))
    assert missing.failed and missing.stale_map
    lost = classify_error(_entries(2), EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert lost.call_error == "EndpointConnectionError"
    assert len(lost.failed) == 2 and lost.stale_map


def test_settle_retries_until_the_limit_then_fails_with_the_last_error() -> None:
    entries = _entries(1)
    error = _client_error("ThrottlingException", "rate")
    for attempt in (1, 2):
        settled = settle(classify_error(entries, error), max_retries=2, stream="s1")
        assert settled.retry == entries and not settled.gave_up
        assert entries[0].attempts == attempt
    settled = settle(classify_error(entries, error), max_retries=2, stream="s1")
    assert not settled.retry
    [(entry, failure)] = settled.gave_up
    assert entry is entries[0]
    assert isinstance(failure, PutFailed)
    assert failure.error_code == "ThrottlingException"
    assert failure.attempts == 3
    assert str(failure) == (
        "record not acknowledged by Kinesis stream s1 after 3 attempts "
        "(last error ThrottlingException: rate)"
    )


def test_settle_fails_fatal_entries_at_once_and_passes_acknowledged_ones() -> None:
    entries = _entries(2)
    response = {
        "Records": [
            {"ShardId": "s", "SequenceNumber": "5"},
            {"ErrorCode": "ValidationException", "ErrorMessage": "too big"},
        ]
    }
    settled = settle(classify_response(entries, response, None), max_retries=5, stream="s1")
    assert settled.acked == [(entries[0], PutResult("s", "5"))]
    assert not settled.retry
    [(entry, failure)] = settled.gave_up
    assert entry is entries[1] and failure.attempts == 1
    assert str(failure) == "Kinesis stream s1 rejected the record: ValidationException: too big"

"""The shared batch parser and record validation that the Ingestion Interface and Log
Consolidation both use."""

from __future__ import annotations

import orjson
import pytest

from stages.common.errors import Unprocessable
from stages.common.validation import (
    MAX_BATCH_RECORDS,
    MAX_RECORD_JSON_BYTES,
    parse_batch,
    validate_records,
)

LOG = {
    "timestamp": "2025-11-09T15:24:33.123Z",
    "kind": "log",
    "service": "auth-service",
    "level": "INFO",
    "message": "login ok",
}


def test_parse_batch_returns_the_records_as_sent() -> None:
    body = orjson.dumps({"records": [LOG, {"anything": [1, 2]}, 7]})
    assert parse_batch(body) == [LOG, {"anything": [1, 2]}, 7]


def test_parse_batch_keeps_integers_beyond_64_bits() -> None:
    # The record's own validation refuses them with a reason; the parser must not round them.
    assert parse_batch(b'{"records": [{"n": 123456789012345678901234567890}]}') == [
        {"n": 123456789012345678901234567890}
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{oops", "Invalid JSON: key must be a string at line 1 column 2"),
        (b"[1, 2]", "Input should be an object"),
        (b'{"records": []}', "records: List should have at least 1 item"),
        (b'{"records": [1], "extra": 1}', "extra: Extra inputs are not permitted"),
        (
            orjson.dumps({"records": [1] * (MAX_BATCH_RECORDS + 1)}),
            f"records: List should have at most {MAX_BATCH_RECORDS} items",
        ),
    ],
)
def test_parse_batch_refuses_a_bad_body_with_a_422_naming_the_problem(
    body: bytes, problem: str
) -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_batch(body)
    error = caught.value
    assert error.status_code == 422
    assert error.message == 'the body must be {"records": [...]} with 1 to 5000 records'
    assert len(error.detail) == 1
    assert error.detail[0].startswith(problem)


def test_validate_records_names_each_rejected_record_and_keeps_the_rest() -> None:
    outcome = validate_records([LOG, {"kind": "log"}, "text", LOG | {"level": "LOUD"}])
    assert len(outcome.records) == 1
    assert outcome.lines[0] == orjson.dumps(outcome.dicts[0]) + b"\n"
    rejected = {r.index: r.problems for r in outcome.rejected}
    assert sorted(rejected) == [1, 2, 3]
    assert rejected[2] == ["a record must be a JSON object"]
    assert any(p.startswith("level:") for p in rejected[3])


def test_validate_records_refuses_a_record_too_large_for_kinesis_in_both_modes() -> None:
    big = LOG | {"attributes": {"blob": "x" * MAX_RECORD_JSON_BYTES}}
    for wire in (True, False):
        outcome = validate_records([LOG, big], wire=wire)
        assert len(outcome.records) == 1
        assert [r.index for r in outcome.rejected] == [1]
        assert "Kinesis takes at most" in outcome.rejected[0].problems[0]

"""Raw JSONL -> typed Arrow tables: every field accounted for, bad lines quarantined."""

from __future__ import annotations

import gc
import gzip
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stages.common.records import Record
from stages.etl.tables import column_names
from stages.etl.typing import KINDS, PROMOTED, RawPartition, type_jsonl
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import SynthesizeRequest


def _synthesized(count: int = 3000, seed: int = 7) -> list[dict[str, Any]]:
    request = SynthesizeRequest.model_validate({"count": count, "seed": seed})
    return synthesize(request, EntityPool()).records


def _jsonl(records: list[Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def _expected_row(record: dict[str, Any]) -> dict[str, Any]:
    """What a typed row holds, computed from the record independently of the typing code."""
    moment = datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    attributes = record.get("attributes", {})
    row = {name: record.get(name) for name in column_names(record["kind"])}
    row |= {
        "timestamp": moment,
        "dt": moment.date(),
        "hr": moment.hour,
        "attributes": attributes,
    }
    for column, key, _ in PROMOTED[record["kind"]]:
        value = attributes.get(key)
        row[column] = value if isinstance(value, (int, float)) and value is not True else None
    if record["kind"] == "log":
        row["duration_ms"] = attributes.get("duration_ms")
    return row


def test_every_synthesized_record_is_typed_with_every_field() -> None:
    records = _synthesized()
    typed = type_jsonl(_jsonl(records))

    assert typed.quarantine.num_rows == 0
    assert typed.lines == len(records)
    by_kind = {kind: [r for r in records if r["kind"] == kind] for kind in KINDS}
    assert all(by_kind.values())
    for kind in KINDS:
        table = typed.tables[kind]
        assert table.num_rows == len(by_kind[kind])
        rows = table.to_pylist()
        for row in rows:
            row["attributes"] = orjson.loads(row["attributes"])
        assert rows == [_expected_row(r) for r in by_kind[kind]]
        # Every Record field of this kind's records has a column (or lives in attributes).
        carried = set().union(*(r.keys() for r in by_kind[kind]))
        assert carried <= set(table.column_names)


def test_columns_have_the_promised_types() -> None:
    typed = type_jsonl(_jsonl(_synthesized(600)))
    for kind in KINDS:
        schema = typed.tables[kind].schema
        assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        for name in ("service", "kind"):
            assert pa.types.is_dictionary(schema.field(name).type)
        assert schema.field("anomaly_score").type == pa.float64()
        assert schema.field("is_anomaly").type == pa.bool_()
        assert schema.field("dt").type == pa.date32()
        assert schema.field("hr").type == pa.int32()
        assert schema.field("event_id").type == pa.string()
    logs = typed.tables["log"].schema
    for name in ("level", "log_type", "category"):
        assert pa.types.is_dictionary(logs.field(name).type)
    assert typed.tables["metric"].schema.field("value").type == pa.float64()
    assert typed.tables["metric"].schema.field("metric_baseline").type == pa.float64()
    assert typed.tables["apm"].schema.field("http_status_code").type == pa.int32()
    assert typed.tables["apm"].schema.field("duration_ms").type == pa.float64()


def test_the_record_model_has_no_field_without_a_column() -> None:
    columns = set().union(*(column_names(kind) for kind in KINDS))
    assert set(Record.model_fields) <= columns


def test_labels_are_kept() -> None:
    records = _synthesized(400)
    records[0] |= {"is_anomaly": True, "anomaly_type": "latency_spike", "scenario_id": "s-1"}
    records[0]["anomaly_score"] = 91.5
    typed = type_jsonl(_jsonl(records))
    table = typed.tables[records[0]["kind"]]
    row = next(r for r in table.to_pylist() if r["event_id"] == records[0]["event_id"])
    assert (row["is_anomaly"], row["anomaly_type"], row["scenario_id"], row["anomaly_score"]) == (
        True,
        "latency_spike",
        "s-1",
        91.5,
    )


def _log(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "e" * 32,
        "timestamp": "2026-03-01T10:15:00.250Z",
        "kind": "log",
        "service": "auth-service",
        "level": "INFO",
        "message": "ok",
        "attributes": {"http.status_code": 200},
    } | overrides


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"kind": "log", "timestamp": ', "invalid JSON"),
        (b"[1, 2]", "not a JSON object: list"),
        (orjson.dumps(_log(kind="trace")), "unknown kind: 'trace'"),
        (orjson.dumps(_log(colour="red")), "fields not in the log schema: colour"),
        (orjson.dumps({k: v for k, v in _log().items() if k != "timestamp"}), "missing timestamp"),
        (orjson.dumps(_log(timestamp=1700000000)), "wrong type for timestamp: int"),
        (orjson.dumps(_log(timestamp="yesterday")), "invalid timestamp: 'yesterday'"),
        (orjson.dumps(_log(timestamp="2026-02-31T00:00:00.000Z")), "invalid timestamp"),
        (orjson.dumps(_log(timestamp="2026-03-01T10:15:00")), "timestamp without a time zone"),
        (orjson.dumps(_log(timestamp="1969-12-31T23:59:59.000Z")), "timestamp out of range"),
        (orjson.dumps(_log(timestamp="2150-01-01T00:00:00.000Z")), "timestamp out of range"),
        (orjson.dumps(_log(service="Auth Service")), "invalid service: 'Auth Service'"),
        (orjson.dumps(_log(service=7)), "invalid service: 7"),
        (orjson.dumps(_log(level=3)), "wrong type for level: int"),
        (orjson.dumps(_log(anomaly_score="high")), "wrong type for anomaly_score: str"),
        (orjson.dumps(_log(is_anomaly=1)), "wrong type for is_anomaly: int"),
        (orjson.dumps(_log(attributes=["a"])), "wrong type for attributes: list"),
        (orjson.dumps(_log(message=None)), "missing message (required for a log record)"),
        (
            orjson.dumps(_log(kind="metric", metric_name="cpu", unit="%", value="9")),
            "fields not in the metric schema: level, message",
        ),
    ],
)
def test_bad_lines_are_quarantined_with_the_reason(line: bytes, reason: str) -> None:
    good = orjson.dumps(_log())
    partition = RawPartition("auth-service", date(2026, 3, 1), 10)
    typed = type_jsonl(
        good + b"\n" + line + b"\n" + good + b"\n", source_key="raw/x.jsonl", partition=partition
    )

    assert typed.lines == 3
    assert typed.tables["log"].num_rows == 2
    rows = typed.quarantine.to_pylist()
    assert len(rows) == 1
    assert rows[0]["reason"].startswith(reason), rows[0]["reason"]
    assert rows[0]["raw_line"] == line.decode()
    assert rows[0]["line_number"] == 2
    assert rows[0]["source_key"] == "raw/x.jsonl"
    assert (rows[0]["service"], rows[0]["dt"], rows[0]["hr"]) == (
        "auth-service",
        date(2026, 3, 1),
        10,
    )


def test_a_metric_with_a_string_value_is_quarantined_not_coerced() -> None:
    metric = {
        "event_id": "m" * 32,
        "timestamp": "2026-03-01T10:15:00.250Z",
        "kind": "metric",
        "service": "auth-service",
        "metric_name": "cpu.usage",
        "value": "9.5",
        "unit": "%",
    }
    typed = type_jsonl(_jsonl([metric, metric | {"value": 9.5}]))
    assert typed.tables["metric"].column("value").to_pylist() == [9.5]
    assert [r["reason"] for r in typed.quarantine.to_pylist()] == ["wrong type for value: str"]


def test_an_offset_timestamp_is_normalised_to_utc() -> None:
    typed = type_jsonl(orjson.dumps(_log(timestamp="2026-03-01T23:30:00.5+02:00")))
    row = typed.tables["log"].to_pylist()[0]
    assert row["timestamp"] == datetime(2026, 3, 1, 21, 30, 0, 500000, tzinfo=UTC)
    assert (row["dt"], row["hr"]) == (date(2026, 3, 1), 21)


def test_a_promoted_attribute_of_another_type_stays_in_attributes() -> None:
    typed = type_jsonl(orjson.dumps(_log(attributes={"http.status_code": "200"})))
    row = typed.tables["log"].to_pylist()[0]
    assert row["http_status_code"] is None
    assert orjson.loads(row["attributes"]) == {"http.status_code": "200"}


def test_gzip_objects_and_blank_lines() -> None:
    body = _jsonl([_log(), _log(event_id="f" * 32)]) + b"\n  \n"
    typed = type_jsonl(gzip.compress(body))
    assert typed.lines == 2
    assert typed.tables["log"].column("event_id").to_pylist() == ["e" * 32, "f" * 32]
    assert typed.quarantine.num_rows == 0


def test_the_garbage_collector_is_left_as_it_was() -> None:
    assert gc.isenabled()
    type_jsonl(orjson.dumps(_log()))
    assert gc.isenabled()
    gc.disable()
    try:
        type_jsonl(orjson.dumps(_log()))
        assert not gc.isenabled()
    finally:
        gc.enable()


def _metric(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "m" * 32,
        "timestamp": "2026-03-01T10:15:00.250Z",
        "kind": "metric",
        "service": "auth-service",
        "metric_name": "bytes.total",
        "value": 1.5,
        "unit": "B",
    } | overrides


def test_the_fast_and_the_careful_path_type_records_alike() -> None:
    from stages.etl.typing import _careful, _Quarantine

    records = _synthesized(1500, seed=3)
    body = _jsonl(records)
    fast = type_jsonl(body)
    lines = body.split(b"\n")
    quarantine = _Quarantine("", None)
    careful, count = _careful(lines, list(range(len(records))), quarantine)
    assert count == len(records) and quarantine.table().num_rows == 0
    for kind in KINDS:
        table, origin = careful[kind]
        assert origin == [i for i, r in enumerate(records) if r["kind"] == kind]
        assert fast.tables[kind].to_pylist() == table.to_pylist()
        assert fast.tables[kind].schema == table.schema


def test_bad_lines_among_many_good_ones_keep_every_line_in_one_output() -> None:
    records = _synthesized(2500, seed=5)
    bad_lines = {
        7: (b"{not json", "invalid JSON"),
        400: (orjson.dumps(_metric(value=True)), "wrong type for value: bool"),
        401: (orjson.dumps(_log(anomaly_score=True)), "wrong type for anomaly_score: bool"),
        1200: (orjson.dumps(_log(timestamp="2026-02-31T00:00:00.000Z")), "invalid timestamp"),
        1201: (orjson.dumps(_log(service="Bad/Name")), "invalid service: 'Bad/Name'"),
        2000: (orjson.dumps(_log(attributes=7)), "wrong type for attributes: int"),
        2001: (orjson.dumps(_log(timestamp="2099-12-31T23:00:00.000-02:00")), "timestamp out of"),
    }
    lines = [orjson.dumps(r) for r in records]
    for position, (line, _) in sorted(bad_lines.items()):
        lines.insert(position, line)
    # One good record in another form: a timestamp with an offset, normalised to UTC.
    lines.insert(1500, orjson.dumps(_log(event_id="o" * 32, timestamp="2026-03-01T23:30:00+02:00")))
    typed = type_jsonl(b"\n".join(lines) + b"\n")

    assert typed.lines == len(lines)
    rows = typed.quarantine.to_pylist()
    assert {r["line_number"] - 1 for r in rows} == {
        i for i, line in enumerate(lines) for bad, _ in bad_lines.values() if line is bad
    }
    for row in rows:
        line = lines[row["line_number"] - 1]
        reason = next(reason for bad, reason in bad_lines.values() if bad is line)
        assert row["reason"].startswith(reason), row["reason"]
    assert typed.typed == len(records) + 1
    # The typed rows keep the order of their lines.
    logs = typed.tables["log"].column("event_id").to_pylist()
    expected = [orjson.loads(line).get("event_id") for line in lines if b'"kind":"log"' in line]
    expected = [e for e in expected if e != "e" * 32]
    assert logs == expected
    offset = typed.tables["log"].filter(pc.equal(typed.tables["log"]["event_id"], "o" * 32))
    assert offset["timestamp"].to_pylist() == [datetime(2026, 3, 1, 21, 30, tzinfo=UTC)]


def test_attributes_keep_their_json_in_any_spelling() -> None:
    lines = [
        b'{"kind":"log","timestamp":"2026-03-01T10:15:00.250Z","service":"auth-service",'
        b'"level":"INFO","message":"a","attributes" : { "caf\\u00e9" : [1, {"x": null}] } }',
        b'{"kind":"log","timestamp":"2026-03-01T10:15:00.250Z","service":"auth-service",'
        b'"level":"INFO","message":"b","attributes":null}',
        b'{"kind":"log","timestamp":"2026-03-01T10:15:00.250Z","service":"auth-service",'
        b'"level":"INFO","message":"c"}',
    ]
    typed = type_jsonl(b"\n".join(lines))
    attributes = [orjson.loads(a) for a in typed.tables["log"].column("attributes").to_pylist()]
    assert attributes == [{"café": [1, {"x": None}]}, {}, {}]


def test_invalid_utf8_in_attributes_is_quarantined() -> None:
    line = orjson.dumps(_log(attributes={"a": "x"})).replace(b'"x"', b'"\xff"')
    typed = type_jsonl(orjson.dumps(_log()) + b"\n" + line)
    assert typed.tables["log"].num_rows == 1
    assert [r["reason"][:12] for r in typed.quarantine.to_pylist()] == ["invalid JSON"]


def test_an_integer_beyond_double_precision_is_stored_as_the_nearest_double() -> None:
    metric = _metric()
    huge = 2**60 + 1
    # Alone (the fast path) and beside a record only the careful path takes.
    for extra in ([], [_log(timestamp="2026-03-01T10:15:00+00:00")]):
        typed = type_jsonl(_jsonl([metric | {"value": huge}, *extra]))
        assert typed.quarantine.num_rows == 0
        assert typed.tables["metric"].column("value").to_pylist() == [float(huge)]
    careful_only = type_jsonl(_jsonl([metric | {"value": huge, "timestamp": "2026-03-01T10:15Z"}]))
    assert careful_only.tables["metric"].column("value").to_pylist() == [float(huge)]


def test_a_promoted_attribute_beyond_double_precision_is_stored_as_the_nearest_double() -> None:
    huge = 2**60 + 1
    # The fast path, and the careful path (a timestamp in another form sends the line there).
    for log in (_log(), _log(timestamp="2026-03-01T10:15:00+00:00")):
        log["attributes"] = {"duration_ms": huge, "http.status_code": huge}
        typed = type_jsonl(orjson.dumps(log))
        assert typed.quarantine.num_rows == 0
        row = typed.tables["log"].to_pylist()[0]
        assert (row["duration_ms"], row["http_status_code"]) == (float(huge), None)
        assert orjson.loads(row["attributes"]) == {"duration_ms": huge, "http.status_code": huge}


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        (b'{"x": 1e400}', "invalid JSON: number is infinity"),
        (b'{"duration_ms": 1e400}', "invalid JSON: number is infinity"),
        (b"[" * 3000 + b"]" * 3000, "invalid JSON: depth limit exceeded"),
        (b'{"x": "\\ud800"}', "invalid JSON: no low surrogate"),
    ],
)
def test_attributes_the_parser_refuses_are_quarantined(attributes: bytes, reason: str) -> None:
    line = orjson.dumps(_log(attributes={})).replace(
        b'"attributes":{}', b'"attributes":' + attributes
    )
    typed = type_jsonl(orjson.dumps(_log()) + b"\n" + line)
    assert typed.tables["log"].num_rows == 1
    assert [r["reason"][: len(reason)] for r in typed.quarantine.to_pylist()] == [reason]


def test_several_objects_typed_at_once_keep_each_bad_line_s_object_and_line() -> None:
    from stages.etl.typing import type_objects

    first = _jsonl([_log(event_id="a" * 32), _log(event_id="b" * 32)])
    second = orjson.dumps(_log(event_id="c" * 32)) + b"\n" + b"{broken" + b"\n\n"
    third = orjson.dumps(_log(event_id="d" * 32)) + b"\n" + orjson.dumps(_log(level=3))
    typed = type_objects(
        [("raw/1.jsonl", first), ("raw/2.jsonl.gz", gzip.compress(second)), ("raw/3", third)]
    )
    assert typed.lines == 6
    assert typed.tables["log"].column("event_id").to_pylist() == [c * 32 for c in "abcd"]
    rows = typed.quarantine.to_pylist()
    assert [(r["source_key"], r["line_number"], r["reason"][:12]) for r in rows] == [
        ("raw/2.jsonl.gz", 2, "invalid JSON"),
        ("raw/3", 2, "wrong type f"),
    ]


def test_lines_holding_two_records_or_half_a_record_are_quarantined_in_a_whole_body() -> None:
    # A body of one kind that msgspec's stream reader would read as as many values as lines:
    # one line holds two records, and one record spans two lines. Each line is its own record
    # or a quarantined line, as if typed alone.
    good = [orjson.dumps(_log(event_id=f"{i:032x}")) for i in range(4)]
    two = good[1] + good[2]
    half = orjson.dumps(_log(event_id="a" * 32)).replace(b'"level":', b'"level":\n')
    body = b"\n".join([good[0], two, half, good[3]]) + b"\n"
    assert body.count(b"\n") == 5
    typed = type_jsonl(body, source_key="k")
    assert typed.tables["log"].column("event_id").to_pylist() == [f"{0:032x}", f"{3:032x}"]
    bad = [(r["line_number"], r["reason"][:12]) for r in typed.quarantine.to_pylist()]
    assert bad == [(2, "invalid JSON"), (3, "invalid JSON"), (4, "invalid JSON")]
    assert typed.lines == 5


def test_a_body_without_its_last_newline_or_with_blank_lines_types_every_record() -> None:
    records = [_log(event_id=f"{i:032x}") for i in range(3)]
    ids = [r["event_id"] for r in records]
    for body in (
        _jsonl(records).rstrip(b"\n"),
        _jsonl(records[:1]) + b"\n" + _jsonl(records[1:]),
        b"\n" + _jsonl(records),
    ):
        typed = type_jsonl(body)
        assert typed.tables["log"].column("event_id").to_pylist() == ids, body[:40]
        assert typed.lines == 3 and typed.quarantine.num_rows == 0


def _mixed_sample() -> tuple[list[bytes], set[int]]:
    """Real Stage 00 records of every kind, variants the fast path types too (unicode, nulls,
    integers where doubles go, promoted keys of every type, no attributes), and lines only the
    careful path takes: a timestamp with an offset (typed) and malformed lines (quarantined).
    Returns the lines and the indices of those the fast path must leave to the careful one."""
    request = SynthesizeRequest.model_validate(
        {"count": 600, "seed": 11, "spread_seconds": 600, "anomalous_share": 0.2}
    )
    records = synthesize(request, EntityPool()).records
    assert {r["kind"] for r in records} == set(KINDS)
    variants: list[dict[str, Any]] = []
    for i, record in enumerate(records[:120]):
        variant = dict(record, event_id=f"{i:032x}")
        attributes = dict(record.get("attributes") or {})
        match i % 12:
            case 0:
                variant["message" if record["kind"] == "log" else "host"] = "café ☕ 東京 \u2028 ok"
                attributes["naïve"] = "ünïcödé 🚀"
            case 1:
                variant |= {"host": None, "source": None, "anomaly_score": None}
                variant |= {"scenario_id": None, "anomaly_type": None, "is_anomaly": None}
            case 2:
                variant["anomaly_score"] = 7
                variant["value" if record["kind"] == "metric" else "anomaly_score"] = 12
                if record["kind"] == "apm":
                    variant["duration_ms"] = 40
            case 3:
                attributes |= {"http.status_code": "500", "duration_ms": True, "depth": 2.5}
                attributes |= {"self_time_ms": None, "metric.baseline": "high"}
            case 4:
                attributes |= {"http.status_code": 2**40, "duration_ms": 3, "depth": -1}
                attributes |= {"self_time_ms": 1.25, "metric.baseline": 2**62 + 1}
            case 5:
                variant.pop("attributes", None)
                attributes = None
            case 6:
                attributes = {"nested": {"a": [1, 2.5, None, {"b": "c"}]}, "empty": {}}
            case 7:
                variant["timestamp"] = "2026-03-01T23:30:00.5+02:00"
            case 9:
                # Beyond 64 bits: a placeholder replaced in the line's text below.
                attributes |= {"duration_ms": 999, "metric.baseline": 999, "depth": 999}
            case 8:
                variant["is_anomaly"] = not record["is_anomaly"]
                variant["scenario_id"], variant["anomaly_type"] = "s-9", "error_burst"
        if attributes is not None:
            variant["attributes"] = attributes
        variants.append(variant)
    huge = b"123456789012345678901234567890"
    tagged = [
        (orjson.dumps(r).replace(b":999", b":" + huge), "+" in r["timestamp"])
        for r in records + variants
    ]
    assert sum(huge in line for line, _ in tagged) == 10
    malformed = [
        b'{"kind": "log", "timestamp": ',
        b"[1, 2]",
        b"null",
        orjson.dumps(_log(kind="trace")),
        orjson.dumps(_log(colour="red")),
        orjson.dumps({k: v for k, v in _log().items() if k != "timestamp"}),
        orjson.dumps(_log(timestamp=1700000000)),
        orjson.dumps(_log(timestamp="2026-02-31T00:00:00.000Z")),
        orjson.dumps(_log(timestamp="2026-03-01T10:15:00")),
        orjson.dumps(_log(timestamp="1969-12-31T23:59:59.000Z")),
        orjson.dumps(_log(service="Auth Service")),
        orjson.dumps(_log(service=7)),
        orjson.dumps(_log(level=3)),
        orjson.dumps(_log(attributes=["a"])),
        orjson.dumps(_log(attributes="x")),
        orjson.dumps(_log(message=None)),
        orjson.dumps(_metric(value="9.5")),
        orjson.dumps(_metric(value=True)),
        orjson.dumps(_log(attributes={"a": "x"})).replace(b'"x"', b'"\xff"'),
        orjson.dumps(_log(attributes={})).replace(b"{}", b'{"x": 1e400}'),
        orjson.dumps(_log(attributes={})).replace(b"{}", b'{"x": "\\ud800"}'),
        orjson.dumps(_log(message="\u00e9")).replace("\u00e9".encode(), b"\xe9"),
    ]
    for n, line in enumerate(malformed):
        tagged.insert(37 * (n + 1), (line, True))
    return [line for line, _ in tagged], {i for i, (_, careful) in enumerate(tagged) if careful}


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for row in rows:
        row["attributes"] = orjson.loads(row["attributes"])
    return rows


@pytest.mark.parametrize("chunk_bytes", [None, 4096])
def test_the_fast_path_types_and_quarantines_every_line_as_the_careful_path_does(
    monkeypatch: pytest.MonkeyPatch, chunk_bytes: int | None
) -> None:
    from stages.etl import typing

    if chunk_bytes:
        # The body typed in pieces of a few lines: line numbers and order across pieces.
        monkeypatch.setattr(typing, "CHUNK_BYTES", chunk_bytes)
    lines, expected_careful = _mixed_sample()
    quarantine = typing._Quarantine("k", None)
    careful, count = typing._careful(lines, list(range(len(lines))), quarantine)
    careful_rows = {kind: _rows(table) for kind, (table, _) in careful.items()}
    reasons = [(r["line_number"], r["reason"]) for r in quarantine.table().to_pylist()]
    assert count == len(lines) and len(reasons) == 22

    taken: list[bytes] = []
    real_careful = typing._careful

    def spy(raw_lines: list[bytes], indices: list[int], q: Any) -> Any:
        taken.extend(raw_lines[i] for i in indices)
        return real_careful(raw_lines, indices, q)

    monkeypatch.setattr(typing, "_careful", spy)
    # The whole sample in one body (kinds mixed: line by line), and each kind's lines alone
    # (one decoder call over the whole body), as the fold types a raw partition.
    mixed = type_jsonl(b"\n".join(lines) + b"\n", source_key="k")
    assert sorted(taken) == sorted(lines[i] for i in expected_careful)
    quarantined = [(r["line_number"], r["reason"]) for r in mixed.quarantine.to_pylist()]
    assert sorted(quarantined) == sorted(reasons)
    for kind in KINDS:
        assert _rows(mixed.tables[kind]) == careful_rows[kind], kind
        assert mixed.tables[kind].schema == careful[kind][0].schema
        # The lines of this kind the fast path types, in a body of their own.
        origin = careful[kind][1]
        own = [i for i in origin if i not in expected_careful]
        taken.clear()
        alone = type_jsonl(b"\n".join(lines[i] for i in own) + b"\n")
        assert taken == [] and alone.quarantine.num_rows == 0
        rows = [row for row, i in zip(careful_rows[kind], origin, strict=True) if i in own]
        assert _rows(alone.tables[kind]) == rows, kind

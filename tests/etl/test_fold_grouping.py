"""Objects of one raw partition typed together: every row keeps the object it came from."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson

from stages.etl.fold import type_group
from stages.etl.planner import RawObject
from stages.etl.typing import RawPartition

PARTITION = RawPartition("auth-service", date(2026, 11, 27), 6)


def _log(event_id: str, **extra: object) -> bytes:
    record = {
        "event_id": event_id,
        "timestamp": "2026-11-27T06:10:00.000Z",
        "kind": "log",
        "service": "auth-service",
        "level": "INFO",
        "message": "ok",
    }
    return orjson.dumps(record | extra)


def _object(n: int, kind: str = "log") -> RawObject:
    return RawObject(
        "md-raw-logs",
        kind,
        f"service=auth-service/x/part-{n}.jsonl",
        1,
        datetime.now(UTC),
        PARTITION,
    )


def test_rows_and_quarantined_lines_keep_their_object_and_line() -> None:
    objects = [_object(i) for i in range(3)]
    bodies = [
        [_log("a1"), b"{broken", _log("a2")],
        [b"", _log("b1"), b"   ", _log("b2", timestamp="never"), _log("b3")],
        [_log("c1")],
    ]
    (typed,) = type_group(objects, bodies)
    rows = typed.tables["log"].to_pylist()
    where = {r["event_id"]: r["source_key"] for r in rows}
    assert where == {
        "a1": objects[0].key,
        "a2": objects[0].key,
        "b1": objects[1].key,
        "b3": objects[1].key,
        "c1": objects[2].key,
    }
    bad = sorted((r["source_key"], r["line_number"]) for r in typed.quarantine.to_pylist())
    assert bad == [(objects[0].key, 2), (objects[1].key, 4)]
    assert typed.lines == 7
    assert typed.objects == objects


def test_a_record_of_another_kind_falls_back_to_one_object_at_a_time() -> None:
    objects = [_object(i) for i in range(2)]
    metric = orjson.dumps(
        {
            "event_id": "m1",
            "timestamp": "2026-11-27T06:10:00.000Z",
            "kind": "metric",
            "service": "auth-service",
            "metric_name": "cpu",
            "value": 1.0,
            "unit": "%",
        }
    )
    typed = type_group(objects, [[_log("a1")], [metric, _log("b1")]])
    assert [t.objects for t in typed] == [[objects[0]], [objects[1]]]
    assert typed[1].tables["metric"].column("source_key").to_pylist() == [objects[1].key]
    assert typed[1].tables["log"].column("source_key").to_pylist() == [objects[1].key]


def test_whole_bodies_give_each_row_and_bad_line_its_object() -> None:
    objects = [_object(i) for i in range(4)]
    bodies = [
        _log("a1") + b"\n" + b"{broken\n" + _log("a2") + b"\n",
        b"\n" + _log("b1") + b"\n   \n" + _log("b2", timestamp="never") + b"\n" + _log("b3"),
        b"",
        _log("d1") + b"\n",
    ]
    (typed,) = type_group(objects, bodies)
    rows = typed.tables["log"].to_pylist()
    assert [(r["event_id"], r["source_key"]) for r in rows] == [
        ("a1", objects[0].key),
        ("a2", objects[0].key),
        ("b1", objects[1].key),
        ("b3", objects[1].key),
        ("d1", objects[3].key),
    ]
    bad = sorted((r["source_key"], r["line_number"]) for r in typed.quarantine.to_pylist())
    assert bad == [(objects[0].key, 2), (objects[1].key, 4)]
    assert typed.lines == 7

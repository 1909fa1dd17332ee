from datetime import UTC, datetime

import orjson

from stages.consumer.partitioner import route, sanitize_service

ARRIVAL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _route(record: object):
    return route(orjson.dumps(record), ARRIVAL, "stage01-logs-stream")


def test_partition_by_service_and_utc_hour_of_the_event() -> None:
    routed = _route({"service": "api-gateway", "timestamp": "2025-11-09T13:24:33.120Z"})
    assert routed.partition.prefix == "service=api-gateway/year=2025/month=11/day=09/hour=13"
    assert not routed.partition.dead_letter
    assert orjson.loads(routed.line)["service"] == "api-gateway"


def test_offset_timestamps_are_converted_to_utc() -> None:
    routed = _route({"service": "s", "timestamp": "2025-11-09T23:30:00+02:00"})
    assert routed.partition.prefix == "service=s/year=2025/month=11/day=09/hour=21"
    routed = _route({"service": "s", "timestamp": "2025-12-31T23:30:00-01:00"})
    assert routed.partition.prefix == "service=s/year=2026/month=01/day=01/hour=00"


def test_epoch_seconds_and_millis() -> None:
    assert _route({"service": "s", "timestamp": 1767225600}).partition.prefix.endswith(
        "year=2026/month=01/day=01/hour=00"
    )
    assert _route({"service": "s", "timestamp": 1767225600123}).partition.prefix.endswith(
        "year=2026/month=01/day=01/hour=00"
    )


def test_missing_or_bad_timestamp_falls_back_to_arrival_time() -> None:
    for record in ({"service": "s"}, {"service": "s", "timestamp": "yesterday"}):
        routed = _route(record)
        assert routed.partition.prefix == "service=s/year=2026/month=01/day=02/hour=03"
        assert routed.event_time_from_arrival


def test_service_is_sanitised_for_hive_paths() -> None:
    assert sanitize_service("a/b=c:d") == "a_b_c_d"
    routed = _route({"service": "../etc=x:y", "timestamp": "2025-11-09T13:24:33.120Z"})
    assert routed.partition.prefix.startswith("service=.._etc_x_y/")
    assert routed.partition.prefix.count("/") == 4


def test_unparsable_records_are_dead_letters_with_a_reason() -> None:
    cases = {
        b"not json": "not valid JSON",
        b"[1, 2]": "not a JSON object",
        orjson.dumps({"timestamp": "2025-11-09T13:24:33.120Z"}): "'service'",
        orjson.dumps({"service": "  "}): "'service'",
    }
    for data, reason in cases.items():
        routed = route(data, ARRIVAL, "stage01-logs-stream")
        assert routed.partition.dead_letter
        assert routed.partition.prefix.startswith("_dead-letter/stream=stage01-logs-stream/")
        assert routed.reason is not None and reason in routed.reason


def test_multiline_json_becomes_one_line() -> None:
    routed = route(b'{"service": "s",\n "timestamp": "2025-11-09T13:24:33Z"}', ARRIVAL, "x")
    assert b"\n" not in routed.line
    assert orjson.loads(routed.line) == {"service": "s", "timestamp": "2025-11-09T13:24:33Z"}

import re
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _hour_of(routed) -> str:
    return routed.partition.prefix.split("/", 1)[1]


ARRIVAL_HOUR = "year=2026/month=01/day=02/hour=03"


def test_an_offset_that_moves_the_instant_out_of_years_1_to_9999_falls_back_to_arrival() -> None:
    # datetime.astimezone raises OverflowError for these; the record must still be placed.
    for ts in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-05:00"):
        routed = _route({"service": "s", "timestamp": ts})
        assert not routed.partition.dead_letter
        assert _hour_of(routed) == ARRIVAL_HOUR, ts
        assert routed.event_time_from_arrival


def test_out_of_range_fields_are_never_written_into_a_partition() -> None:
    for ts in (
        "2025-13-01T25:00:00Z",  # month 13, hour 25
        "2025-12-01T25:00:00Z",
        "2025-00-10T10:00:00Z",
        "2025-02-30T10:00:00Z",
        "2023-02-29T10:00:00Z",  # not a leap year
        "2025-04-31T10:00:00Z",
        "2025-11-09T13:60:00Z",
        "2025-11-09T13:24:61Z",
        "0000-01-01T00:00:00Z",
        "2025-11-09T13:24:33+24:00",
        "2025-11-09T13:24:33+02:60",
        "2025-13-01T10:00:00+02:00",
    ):
        routed = _route({"service": "s", "timestamp": ts})
        assert _hour_of(routed) == ARRIVAL_HOUR, ts
        assert routed.event_time_from_arrival, ts


def test_leap_days_and_leap_seconds_are_real_instants() -> None:
    assert _hour_of(_route({"service": "s", "timestamp": "2024-02-29T10:00:00Z"})) == (
        "year=2024/month=02/day=29/hour=10"
    )
    assert _hour_of(_route({"service": "s", "timestamp": "2016-12-31T23:59:60Z"})) == (
        "year=2016/month=12/day=31/hour=23"
    )
    assert _hour_of(_route({"service": "s", "timestamp": "2016-12-31T23:59:60.5+01:00"})) == (
        "year=2016/month=12/day=31/hour=22"
    )


def test_years_before_1000_have_four_digits() -> None:
    for ts in ("0001-01-01T05:00:00+00:00", "0999-06-01T05:30:00+00:30", -62135596800):
        hour = _hour_of(_route({"service": "s", "timestamp": ts}))
        assert hour.startswith(("year=0001/", "year=0999/")), (ts, hour)
        assert hour.endswith("/hour=05") or hour.endswith("/hour=00"), (ts, hour)


def test_non_string_empty_and_huge_timestamps_fall_back_to_arrival() -> None:
    huge = (b"1e300", b"-1e300", b"18446744073709551615", b"-9223372036854775808")
    for raw in (b'""', b"null", b"true", b"[]", b"{}", *huge):
        data = b'{"service": "s", "timestamp": ' + raw + b"}"
        routed = route(data, ARRIVAL, "stage01-logs-stream")
        assert _hour_of(routed) == ARRIVAL_HOUR, raw
        assert routed.event_time_from_arrival, raw


_KEY = re.compile(
    r"service=(?P<service>[A-Za-z0-9._-]{1,128})/year=(?P<y>\d{4})/month=(?P<m>\d{2})"
    r"/day=(?P<d>\d{2})/hour=(?P<h>\d{2})"
)
_DEAD = re.compile(
    r"_dead-letter/stream=stage01-logs-stream/year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2}"
)


def _assert_valid(routed) -> None:
    if routed.partition.dead_letter:
        assert _DEAD.fullmatch(routed.partition.prefix), routed.partition.prefix
        assert routed.reason
        return
    match = _KEY.fullmatch(routed.partition.prefix)
    assert match, routed.partition.prefix
    # A real calendar hour in years 1..9999 (datetime refuses anything else).
    datetime(int(match["y"]), int(match["m"]), int(match["d"]), int(match["h"]))
    assert b"\n" not in routed.line and b"\r" not in routed.line
    assert orjson.loads(routed.line)["service"].strip()


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
_timestamps = (
    _json_leaf
    | st.from_regex(r"\A\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?\Z")
    | st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)).map(
        datetime.isoformat
    )
    | st.lists(_json_leaf, max_size=3)
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_map_to_a_valid_partition_or_a_dead_letter(data: bytes) -> None:
    _assert_valid(route(data, ARRIVAL, "stage01-logs-stream"))


@settings(max_examples=1000, deadline=None)
@given(service=st.one_of(st.text(max_size=300), _json_leaf), timestamp=_timestamps)
def test_any_service_and_timestamp_map_to_a_valid_partition(
    service: object, timestamp: object
) -> None:
    _assert_valid(_route({"service": service, "timestamp": timestamp, "event_id": "e"}))


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    offset_minutes=st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
def test_offset_timestamps_land_in_their_utc_hour_or_fall_back(
    moment: datetime, offset_minutes: int
) -> None:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    ts = moment.isoformat(timespec="seconds") + f"{sign}{hours:02d}:{minutes:02d}"
    routed = _route({"service": "s", "timestamp": ts})
    try:
        utc = moment - timedelta(minutes=offset_minutes)
    except OverflowError:
        utc = None
    if utc is None:
        assert routed.event_time_from_arrival and _hour_of(routed) == ARRIVAL_HOUR
    else:
        want = f"year={utc.year:04d}/month={utc.month:02d}/day={utc.day:02d}/hour={utc.hour:02d}"
        assert _hour_of(routed) == want
        assert not routed.event_time_from_arrival

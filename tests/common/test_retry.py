"""The shared retry policy: backoff bounds, and Retry-After in both of its forms."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from stages.common.retry import backoff_ceiling, backoff_delay, parse_retry_after


# --- Backoff -------------------------------------------------------------------------------------
def test_the_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    ceilings = [backoff_ceiling(r, base=0.1, cap=5.0) for r in range(9)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_every_delay_is_within_zero_and_the_ceiling() -> None:
    rng = random.Random(1)
    for retry in range(12):
        ceiling = min(2.0, 0.05 * 2**retry)
        delays = [backoff_delay(retry, base=0.05, cap=2.0, rng=rng) for _ in range(500)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter: the draws spread over the whole range, not around one value.
        assert min(delays) < 0.1 * ceiling
        assert max(delays) > 0.9 * ceiling


def test_a_long_outage_stays_at_the_cap() -> None:
    # Retry counts far past any sensible exponent neither overflow nor pass the cap.
    assert backoff_ceiling(10_000, base=0.2, cap=5.0) == 5.0
    assert 0 <= backoff_delay(10_000, base=0.2, cap=5.0) <= 5.0


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [backoff_delay(r, base=0.1, cap=1.0, rng=random.Random(7)) for r in range(5)]
    again = [backoff_delay(r, base=0.1, cap=1.0, rng=random.Random(7)) for r in range(5)]
    assert first == again


@pytest.mark.parametrize(("retry", "base", "cap"), [(-1, 0.1, 1.0), (0, -0.1, 1.0), (0, 0.1, -1.0)])
def test_negative_arguments_are_refused(retry: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        backoff_delay(retry, base=base, cap=cap)


# --- Retry-After ---------------------------------------------------------------------------------
NOW = datetime(2026, 12, 4, 15, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"), [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 3 ", 3.0), ("0.5", 0.5)]
)
def test_delay_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_an_http_date_gives_the_seconds_left_until_it() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert later == "Fri, 04 Dec 2026 15:01:30 GMT"
    assert parse_retry_after(later, now=NOW) == 90.0
    # The obsolete forms RFC 9110 still asks recipients to accept.
    assert parse_retry_after("Friday, 04-Dec-26 15:00:30 GMT", now=NOW) == 30.0
    assert parse_retry_after("Fri Dec  4 15:00:10 2026", now=NOW) == 10.0


def test_an_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Fri, 04 Dec 2026 14:00:00 GMT", now=NOW) == 0.0


def test_an_http_date_is_read_against_the_clock_by_default() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    seconds = parse_retry_after(later)
    assert seconds is not None and 58 <= seconds <= 60


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "-1", "-0.5", "nan", "inf", "soon", "1 minute", "Fri, 99 Foo 2026 25:00:00"],
)
def test_missing_or_bad_values_are_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None

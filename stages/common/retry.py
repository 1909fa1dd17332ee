"""One retry policy for every service: capped exponential backoff with full jitter, and
``Retry-After`` parsing.

Full jitter (a delay drawn uniformly from zero to the capped exponential) spreads the retries of
many callers that failed together, so they do not come back in step; the cap keeps a long outage
from growing the wait past what the caller can afford. Each caller passes its own base and cap
and keeps its own counters.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 2**30 times any sensible base is far past every cap: a larger exponent only risks overflow.
_MAX_EXPONENT = 30


def backoff_ceiling(retry: int, *, base: float, cap: float) -> float:
    """The longest wait before retry ``retry`` (0 for the first): min(cap, base * 2^retry)."""
    if retry < 0:
        raise ValueError(f"retry must be >= 0, got {retry}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must be >= 0, got base={base} cap={cap}")
    return min(cap, base * 2 ** min(retry, _MAX_EXPONENT))


def backoff_delay(
    retry: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first): uniform in
    [0, min(cap, base * 2^retry)]."""
    ceiling = backoff_ceiling(retry, base=base, cap=cap)
    return (rng or random).uniform(0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait that a ``Retry-After`` header asks for, or None if it is missing or bad.

    Both forms of RFC 9110 are read: delay-seconds (``"120"``; a fraction such as ``"0.5"`` is
    accepted too) and an HTTP-date (``"Fri, 04 Dec 2026 15:00:00 GMT"``), which gives the time
    left until that date, 0 if it has passed. A negative, non-finite or unparsable value is
    None, so the caller falls back to its own backoff instead of trusting it.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _seconds_until(text: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

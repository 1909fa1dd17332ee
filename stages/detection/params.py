"""Query parameters the detection API's routes share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BeforeValidator


def _iso8601(value: object) -> object:
    # pydantic also reads a number, or a string of digits, as seconds since the epoch: "-28"
    # would be a moment in 1969. The API takes ISO 8601 text only.
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("expected an ISO 8601 date-time, e.g. 2026-12-04T10:00:00Z") from exc
    return value


# A moment in a query string: ISO 8601 text (naive is UTC), or absent.
Moment = Annotated[datetime | None, BeforeValidator(_iso8601)]

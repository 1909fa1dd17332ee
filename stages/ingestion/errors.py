"""The Ingestion Interface's refusals, each with its HTTP status (see stages.common.errors)."""

from __future__ import annotations

from typing import Any

from stages.common.errors import Unavailable, Unprocessable


class AllRecordsInvalid(Unprocessable):
    error = "validation_error"

    def __init__(self, rejected: list[dict[str, Any]]) -> None:
        super().__init__(
            f"none of the {len(rejected)} records is valid; nothing was accepted",
            detail=rejected,
        )


class CannotAcceptNow(Unavailable):
    """Some records were neither put on Kinesis nor spooled: the caller retries those (the
    ``retry`` results in ``detail``), and only those."""

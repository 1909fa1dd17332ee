"""Synthesis's typed errors; the shared handler renders them (status and body)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from stages.common.errors import StagesError, Unavailable, Unprocessable


class UnknownNames(Unprocessable):
    """A request named log types, services or an anomaly type that do not exist."""

    def __init__(self, what: str, unknown: Iterable[str], valid: Iterable[str]) -> None:
        unknown_list = sorted(set(unknown))
        super().__init__(
            f"unknown {what}: {', '.join(unknown_list)[:300]}",
            detail={"unknown": unknown_list[:50], "valid": sorted(valid)},
        )


class NothingToGenerate(Unprocessable):
    """The filters leave no log type a requested service emits."""


class TooManyRecords(Unprocessable):
    """A request would make more records than one call may."""


class SeriesNotResumable(StagesError):
    """A retry of a series request after part of it was lost: answered like a refusal, so the
    caller counts the missing records as failed instead of getting duplicates."""

    status_code = 502
    error = "series_not_resumable"


class UnknownTargetEntity(Unprocessable):
    """The anomaly's target entity is not a host, database or queue of the estate."""


class IngestionUnavailable(Unavailable):
    """Ingestion did not accept every chunk within the retry budget."""

    def __init__(self, forwarded: int, total: int, reason: str, retry_after: float) -> None:
        super().__init__(
            f"ingestion did not accept the records ({reason}); {forwarded} of {total} forwarded",
            retry_after=retry_after,
            detail={"forwarded": forwarded, "total": total},
        )
        self.forwarded = forwarded
        self.reason = reason
        self.retry_after = retry_after


class IngestionRejected(StagesError):
    """Ingestion refused records as invalid: retrying cannot help, so the caller is told."""

    status_code = 502
    error = "ingestion_rejected"

    def __init__(
        self,
        message: str,
        *,
        detail: Any = None,
        records: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(message, detail=detail)
        self.records = list(records)  # the refused records themselves, never to be re-sent

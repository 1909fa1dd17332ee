"""What a PutRecords call's answer means for each of its entries ("classify"), and what the
producer then owes each entry ("settle"): a result, another attempt, or a :class:`PutFailed`.

Both are pure functions of the call's entries and its answer (a response or an exception), so
every class of answer is unit-tested without Kinesis; the producer applies the decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from stages.ingestion.producer.batching import Entry
from stages.ingestion.producer.errors import PutFailed, PutResult

THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "LimitExceededException",
        "RequestLimitExceeded",
        "KMSThrottlingException",
        "SlowDown",
    }
)
# Errors that another attempt cannot fix; retrying them would only delay the caller's spool.
FATAL_CODES = frozenset(
    {
        "ValidationException",
        "InvalidArgumentException",
        "AccessDeniedException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
        "KMSOptInRequired",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationTokenException",
        "SerializationException",
    }
)
# Errors after which our idea of the stream's shards may be wrong.
STALE_MAP_CODES = frozenset({"ResourceNotFoundException", "InvalidArgumentException"})

# The exceptions a PutRecords call may end with that ``classify_error`` knows.
CALL_ERRORS = (ClientError, BotoCoreError, OSError)

# An entry that was not written, with the error code and message.
Failure = tuple[Entry, str, str]


@dataclass
class CallOutcome:
    """One PutRecords call's entries sorted by what happened to them."""

    acked: list[tuple[Entry, PutResult]] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)  # may succeed on another attempt
    fatal: list[Failure] = field(default_factory=list)  # will not
    call_error: str | None = None  # the whole call failed, with this code
    call_throttled: bool = False
    stale_map: bool = False  # the shard map should be refreshed

    def result(self) -> Literal["ok", "partial", "error"]:
        if self.call_error:
            return "error"
        return "partial" if self.failed or self.fatal else "ok"

    def throttled_entries(self) -> int:
        """Entries a successful call reported as throttled (a throttled call counts once)."""
        if self.call_error:
            return 0
        return sum(1 for _, code, _ in self.failed if code in THROTTLE_CODES)

    def acked_kinesis_records(self) -> tuple[int, int]:
        """Acknowledged Kinesis records: (aggregated, plain)."""
        aggregated = sum(1 for entry, _ in self.acked if entry.aggregated)
        return aggregated, len(self.acked) - aggregated


def classify_response(
    entries: list[Entry], response: dict[str, Any], shard_id: str | None
) -> CallOutcome:
    """Sort the entries of a call that got an answer; ``shard_id`` is the shard they were
    routed to (None while no shard map is known)."""
    outcome = CallOutcome()
    results = response.get("Records") or []
    if len(results) != len(entries):
        outcome.call_error = "MalformedResponse"
        message = f"{len(results)} results for {len(entries)} records"
        outcome.failed = [(entry, outcome.call_error, message) for entry in entries]
        return outcome
    for entry, result in zip(entries, results, strict=True):
        code = result.get("ErrorCode")
        if code:
            target = outcome.fatal if code in FATAL_CODES else outcome.failed
            target.append((entry, code, result.get("ErrorMessage", "")))
            continue
        written_to = result["ShardId"]
        if shard_id is not None and written_to != shard_id:
            outcome.stale_map = True  # Kinesis put it on a shard our map did not predict
        outcome.acked.append((entry, PutResult(written_to, result["SequenceNumber"])))
    return outcome


def classify_error(entries: list[Entry], exc: BaseException) -> CallOutcome:
    """Sort the entries of a call that ended with one of ``CALL_ERRORS``."""
    outcome = CallOutcome()
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        message = str(error.get("Message") or exc)
        outcome.call_error = code
        outcome.call_throttled = code in THROTTLE_CODES
        outcome.stale_map = code in STALE_MAP_CODES
        target = outcome.fatal if code in FATAL_CODES else outcome.failed
        target += [(entry, code, message) for entry in entries]
    elif isinstance(exc, ParamValidationError):
        outcome.call_error = "ParamValidationError"
        outcome.fatal = [(entry, outcome.call_error, str(exc)) for entry in entries]
    else:  # a connection or other transport error: the endpoint, or the shards, may have moved
        outcome.call_error = type(exc).__name__
        outcome.failed = [(entry, outcome.call_error, str(exc)) for entry in entries]
        outcome.stale_map = True
    return outcome


@dataclass
class Settlement:
    """What the producer does with a call's entries."""

    acked: list[tuple[Entry, PutResult]]
    retry: list[Entry]
    gave_up: list[tuple[Entry, PutFailed]]


def settle(outcome: CallOutcome, *, max_retries: int, stream: str) -> Settlement:
    """Count the attempt on every entry that was not written and decide: another attempt (a
    retryable error with retries left) or :class:`PutFailed`."""
    retry: list[Entry] = []
    gave_up: list[tuple[Entry, PutFailed]] = []
    for entry, code, message in outcome.failed:
        entry.attempts += 1
        entry.last_error = f"{code}: {message}"
        if entry.attempts <= max_retries:
            retry.append(entry)
            continue
        error = PutFailed(
            f"record not acknowledged by Kinesis stream {stream} after "
            f"{entry.attempts} attempts (last error {entry.last_error})",
            code,
            entry.attempts,
        )
        gave_up.append((entry, error))
    for entry, code, message in outcome.fatal:
        entry.attempts += 1
        error = PutFailed(
            f"Kinesis stream {stream} rejected the record: {code}: {message}", code, entry.attempts
        )
        gave_up.append((entry, error))
    return Settlement(outcome.acked, retry, gave_up)

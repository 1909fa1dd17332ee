"""The ingest path: validate, make the batch durable, then feed the category files and Log
Consolidation. A 2xx means every valid record is on Kinesis or fsynced in the spool.

The answer says what happened to each record, as Kinesis PutRecords does: ``accepted`` (on
Kinesis or in the spool), ``rejected`` (invalid; the same record is refused again) or ``retry``
(neither on Kinesis nor spooled: Kinesis did not acknowledge it in time and the spool had no
room). A batch with any ``retry`` record is answered 503, and the records it did accept stay
accepted: part of a batch can reach Kinesis before the spool refuses the rest. Every valid record
is answered with its ``event_id``, assigned here when the record had none, so a caller retries
exactly the ``retry`` records under the same ids and the consumer's duplicate window drops a copy
(a record Kinesis acknowledged after the request gave up on it)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from stages.common.counters import OutcomeCounters
from stages.common.retry import backoff_delay
from stages.common.validation import validate_records
from stages.ingestion.categories import CategoryFiles
from stages.ingestion.errors import AllRecordsInvalid, CannotAcceptNow
from stages.ingestion.forward import ConsolidationForwarder
from stages.ingestion.kinesis import KinesisSink
from stages.ingestion.spool import Chunk, Spool, SpoolFull

log = logging.getLogger(__name__)

COUNTER_NAMES = (
    "received",
    "accepted",
    "rejected",
    "to_kinesis",
    "spooled",
    "spool_drained",
    "spool_unreadable",
    "consolidation_delivered",
    "consolidation_retried",
    "consolidation_failed",
    "consolidation_dropped",
    "category_files_written",
    "category_write_failures",
    "unavailable_503",
    "answered_retry",
)


_MAX_EVENT_ID = 64  # the canonical Record's bound


def ingestion_counters() -> OutcomeCounters:
    return OutcomeCounters("ingestion", COUNTER_NAMES, "Ingestion Interface record outcomes")


@dataclass
class IngestResult:
    accepted: int
    spooled: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    retry: int = 0
    # one per record of the request, in its order: {"index", "event_id", "status"[, "error"]}
    results: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "spooled": self.spooled,
            "retry": self.retry,
            "rejected": self.rejected,
            "results": self.results,
        }


@dataclass
class _Durable:
    """Where each valid record went: ``retry`` holds the positions neither Kinesis nor the
    spool took (in the valid records' order), with the reason."""

    spooled: int = 0
    retry: list[int] = field(default_factory=list)
    reason: str = ""


class Ingestor:
    def __init__(
        self,
        *,
        sink: KinesisSink,
        spool: Spool,
        categories: CategoryFiles,
        forwarder: ConsolidationForwarder,
        counters: OutcomeCounters,
    ) -> None:
        self._sink = sink
        self._spool = spool
        self._categories = categories
        self._forwarder = forwarder
        self.counters = counters

    def ingest(self, raw: list[Any]) -> IngestResult:
        """Validate and store; raises ``CannotAcceptNow`` (503) carrying the per-record answer
        when some valid record could be neither put on Kinesis nor spooled."""
        validated = validate_records(raw)
        rejected = [r.to_dict() for r in validated.rejected]
        self.counters.inc("received", len(raw))
        self.counters.inc("rejected", len(rejected))
        if not validated.records:
            raise AllRecordsInvalid(rejected)
        durable = self._make_durable(validated.dicts, validated.lines)
        retry = set(durable.retry)
        if retry:
            keep = [i for i in range(len(validated.lines)) if i not in retry]
            records = [validated.records[i] for i in keep]
            lines = [validated.lines[i] for i in keep]
        else:
            records, lines = validated.records, validated.lines
        self.counters.inc("accepted", len(lines))
        # What was accepted is in Kinesis or the spool whatever the answer: the category files
        # and Log Consolidation get it now, and a retry sends them only the rest.
        if lines:
            self._write_categories(records, lines)
            self._forwarder.offer(lines)
        result = IngestResult(
            accepted=len(lines),
            spooled=durable.spooled,
            rejected=rejected,
            retry=len(retry),
            results=_results(raw, validated.dicts, validated.rejected, retry, durable.reason),
        )
        if retry:
            self.counters.inc("unavailable_503")
            self.counters.inc("answered_retry", len(retry))
            raise CannotAcceptNow(
                f"{len(retry)} of the batch's {len(raw)} records were not accepted "
                f"({durable.reason}); {len(lines)} were, and {len(rejected)} are invalid: "
                "retry only the records whose status is retry, with their event_id",
                retry_after=5,
                detail=result.to_dict(),
            )
        return result

    def _make_durable(self, dicts: list[dict[str, Any]], lines: list[bytes]) -> _Durable:
        """Kinesis first, the spool for what it did not take."""
        if self._spool.has_backlog():
            # Nothing overtakes records already waiting in the spool, and a Kinesis that just
            # failed is not asked again by every request while the drain retries it.
            return self._spool_or_refuse(list(range(len(lines))), lines, "Kinesis is behind")
        acked = self._sink.send(dicts)
        self.counters.inc("to_kinesis", sum(acked))
        missing = [i for i, ok in enumerate(acked) if not ok]
        if not missing:
            return _Durable()
        _, kinesis_error = self._sink.reachable()
        return self._spool_or_refuse(missing, lines, f"Kinesis: {kinesis_error or 'no answer'}")

    def _spool_or_refuse(self, positions: list[int], lines: list[bytes], why: str) -> _Durable:
        try:
            self._spool.append([lines[i] for i in positions])
        except SpoolFull as exc:
            return _Durable(retry=positions, reason=f"{why}; the spool cannot hold it: {exc}")
        self.counters.inc("spooled", len(positions))
        return _Durable(spooled=len(positions))

    def _write_categories(self, records: list[Any], lines: list[bytes]) -> None:
        # The records are already durable; a category file is a local convenience copy, so a
        # failed write is logged and counted instead of failing the request.
        try:
            self.counters.inc("category_files_written", self._categories.write(records, lines))
        except OSError as exc:
            self.counters.inc("category_write_failures", len(records))
            log.error("cannot write category files: %s", exc)


def _results(
    raw: list[Any],
    dicts: list[dict[str, Any]],
    rejections: list[Any],
    retry: set[int],
    reason: str,
) -> list[dict[str, Any]]:
    """One result per request record, in its order (``retry`` holds valid-record positions)."""
    results: list[dict[str, Any] | None] = [None] * len(raw)
    for rejection in rejections:
        item = raw[rejection.index]
        event_id = item.get("event_id") if isinstance(item, dict) else None
        # An invalid record's id is echoed only when it could be an id (a record refused for a
        # megabyte-long event_id does not get it back).
        valid_id = isinstance(event_id, str) and len(event_id) <= _MAX_EVENT_ID
        results[rejection.index] = {
            "index": rejection.index,
            "event_id": event_id if valid_id else None,
            "status": "rejected",
            "error": "; ".join(rejection.problems),
        }
    valid = 0
    for index, slot in enumerate(results):
        if slot is not None:
            continue
        if valid in retry:
            results[index] = {
                "index": index,
                "event_id": dicts[valid]["event_id"],
                "status": "retry",
                "error": reason,
            }
        else:
            results[index] = {
                "index": index,
                "event_id": dicts[valid]["event_id"],
                "status": "accepted",
            }
        valid += 1
    return [r for r in results if r is not None]


class SpoolDrainer:
    """Moves spooled records to Kinesis in order, one chunk at a time, from its own thread."""

    def __init__(
        self,
        spool: Spool,
        sink: KinesisSink,
        counters: OutcomeCounters,
        *,
        chunk_records: int = 500,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._spool = spool
        self._sink = sink
        self._counters = counters
        self._chunk_records = chunk_records
        self._max_backoff = max_backoff_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-drain", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._spool.new_data.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        acked: set[int] = set()
        current: tuple[int, int] | None = None
        while not self._stop.is_set():
            chunk = self._spool.oldest_chunk(self._chunk_records)
            if chunk is None:
                self._spool.new_data.wait(0.5)
                self._spool.new_data.clear()
                continue
            if (chunk.segment, chunk.start) != current:
                current, acked = (chunk.segment, chunk.start), set()
            try:
                done = self._send_chunk(chunk, acked)
            except Exception:
                log.exception("spool drain failed; retrying")
                done = False
            if done:
                self._spool.commit(chunk)
                self._counters.inc("spool_drained", len(chunk.lines))
                failures = 0
            else:
                self._stop.wait(backoff_delay(failures, base=0.2, cap=self._max_backoff))
                failures += 1

    def _send_chunk(self, chunk: Chunk, acked: set[int]) -> bool:
        """Send the chunk's records not yet acknowledged; True once all of them are."""
        todo: list[int] = []
        records: list[dict[str, Any]] = []
        for index, line in enumerate(chunk.lines):
            if index in acked:
                continue
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                log.error("spool line %d of segment %d is not JSON; skipped", index, chunk.segment)
                self._counters.inc("spool_unreadable")
                acked.add(index)
                continue
            todo.append(index)
        if records:
            results = self._sink.send(records)
            for index, ok in zip(todo, results, strict=True):
                if ok:
                    acked.add(index)
            self._counters.inc("to_kinesis", sum(results))
        return len(acked) == len(chunk.lines)

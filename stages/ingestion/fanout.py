"""The ingest path: validate, make the batch durable, then feed the category files and Log
Consolidation. A 2xx means every accepted record is on Kinesis or fsynced in the spool."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from stages.common.counters import OutcomeCounters
from stages.ingestion.categories import CategoryFiles
from stages.ingestion.errors import AllRecordsInvalid, CannotAcceptNow
from stages.ingestion.forward import ConsolidationForwarder
from stages.ingestion.kinesis import KinesisSink
from stages.ingestion.spool import Chunk, Spool, SpoolFull
from stages.ingestion.validate import validate_records

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
)


def ingestion_counters() -> OutcomeCounters:
    return OutcomeCounters("ingestion", COUNTER_NAMES, "Ingestion Interface record outcomes")


@dataclass
class IngestResult:
    accepted: int
    spooled: int
    rejected: list[dict[str, Any]] = field(default_factory=list)


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
        validated = validate_records(raw)
        rejected = [r.to_dict() for r in validated.rejected]
        self.counters.inc("received", len(raw))
        self.counters.inc("rejected", len(rejected))
        if not validated.records:
            raise AllRecordsInvalid(rejected)
        dicts = validated.dicts
        spooled = self._make_durable(dicts, validated.lines)
        self.counters.inc("accepted", len(dicts))
        self._write_categories(validated.records, validated.lines)
        self._forwarder.offer(validated.lines)
        return IngestResult(accepted=len(dicts), spooled=spooled, rejected=rejected)

    def _make_durable(self, dicts: list[dict[str, Any]], lines: list[bytes]) -> int:
        """Kinesis first, the spool for what it did not take; returns how many were spooled."""
        if self._spool.has_backlog():
            # Nothing overtakes records already waiting in the spool, and a Kinesis that just
            # failed is not asked again by every request while the drain retries it.
            self._spool_or_refuse(lines, already_on_kinesis=0)
            return len(lines)
        acked = self._sink.send(dicts)
        on_kinesis = sum(acked)
        self.counters.inc("to_kinesis", on_kinesis)
        missing = [line for line, ok in zip(lines, acked, strict=True) if not ok]
        if missing:
            self._spool_or_refuse(missing, already_on_kinesis=on_kinesis)
        return len(missing)

    def _spool_or_refuse(self, lines: list[bytes], *, already_on_kinesis: int) -> None:
        try:
            self._spool.append(lines)
        except SpoolFull as exc:
            self.counters.inc("unavailable_503")
            note = (
                f"; {already_on_kinesis} of the batch's records did reach Kinesis and will be "
                "there twice after a retry"
                if already_on_kinesis
                else ""
            )
            raise CannotAcceptNow(
                f"Kinesis did not take the batch and the spool cannot hold it ({exc}); "
                f"nothing was accepted{note}, retry later",
                retry_after=5,
            ) from exc
        self.counters.inc("spooled", len(lines))

    def _write_categories(self, records: list[Any], lines: list[bytes]) -> None:
        # The records are already durable; a category file is a local convenience copy, so a
        # failed write is logged and counted instead of failing the request.
        try:
            self.counters.inc("category_files_written", self._categories.write(records, lines))
        except OSError as exc:
            self.counters.inc("category_write_failures", len(records))
            log.error("cannot write category files: %s", exc)


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
        backoff = 0.2
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
                backoff = 0.2
            else:
                self._stop.wait(backoff)
                backoff = min(self._max_backoff, backoff * 2)

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

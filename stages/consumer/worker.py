"""One shard's loop: read, buffer by partition, flush (pending -> upload -> checkpoint)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from stages.common.kpl import UserRecord
from stages.common.retry import backoff_delay
from stages.consumer import metrics
from stages.consumer.batcher import FlushLimits, ShardBuffer
from stages.consumer.dedup import DedupWindow, WindowState, event_key
from stages.consumer.faults import FaultPoint
from stages.consumer.leases import SHARD_END, TRIM_HORIZON, Lease, LeaseLost, LeaseStore
from stages.consumer.partitioner import Routed, dead_letter_partition, route
from stages.consumer.reader import KinesisRecord, ReadResult, ShardReader
from stages.consumer.writer import LakeObject, build_objects

log = logging.getLogger(__name__)
T = TypeVar("T")


class FlushAborted(Exception):
    """A flush stopped before its checkpoint; the range will be read again, nothing is lost."""


@dataclass(frozen=True)
class WorkerConfig:
    owner: str
    bucket: str
    compression: str
    limits: FlushLimits
    get_records_limit: int
    poll_interval: float
    max_backoff: float
    dedup_window_records: int = 0
    faults: FaultPoint | None = None  # test-only pauses at named flush steps


class ShardWorker(threading.Thread):
    def __init__(
        self,
        lease: Lease,
        config: WorkerConfig,
        kinesis: Any,
        s3: Any,
        store: LeaseStore,
        open_partitions_total: Callable[[], int],
        max_open_partitions: int,
        shutdown_deadline: Callable[[], float | None],
    ) -> None:
        super().__init__(name=f"shard-{lease.stream}-{lease.shard_id}", daemon=True)
        self.lease = lease
        self.key = lease.key
        self.stream = lease.stream
        self.shard_id = lease.shard_id
        self.config = config
        self.kinesis = kinesis
        self.s3 = s3
        self.store = store
        self.open_partitions_total = open_partitions_total
        self.max_open_partitions = max_open_partitions
        self.shutdown_deadline = shutdown_deadline
        self.stop_requested = threading.Event()  # flush what is buffered, then exit
        self.lost = threading.Event()  # another worker holds the lease: discard and exit
        self.finished = False  # the shard is closed and fully checkpointed
        self.clean_exit = False
        self.ending_sequence: str | None = None  # set by the coordinator once the shard closes
        self.buffer = ShardBuffer(self.stream, self.shard_id)
        self.checkpoint = lease.checkpoint
        self.replay_end = lease.pending_end
        # A pending range is rebuilt as it was cut: with the encoding and the duplicate window
        # recorded with it, not with this process' settings (which may have changed since).
        self.replay_compression = config.compression
        window_records = config.dedup_window_records
        if lease.pending_end is not None:
            self.replay_compression = lease.pending_compression or config.compression
            if lease.pending_window_records is not None:
                window_records = lease.pending_window_records
        self.window = DedupWindow(stored_window(lease), window_records)
        # Records up to the checkpoint are read again only to refill the duplicate window.
        refill = self.window.refill_until
        self.refill_end = int(refill) if refill is not None else None
        self.millis_behind = 0
        self.error: str | None = None  # why the thread ended, when it ended with an exception
        # Monotonic time of the last checkpoint or of the last read that left nothing to write:
        # the coordinator reports the shard as stalled when this gets too old.
        self.progress_at = time.monotonic()

    # --- thread body --------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
            self.clean_exit = True
        except (LeaseLost, FlushAborted) as exc:
            log.warning("%s: stopped: %s", self.key, exc)
            if isinstance(exc, LeaseLost):
                metrics.LEASES_LOST.inc()
                self.lost.set()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: worker failed; the coordinator will restart it", self.key)
        finally:
            metrics.MILLIS_BEHIND.labels(self.stream, self.shard_id).set(0)

    def _run(self) -> None:
        self._with_retries(
            "mark_started", lambda: self.store.mark_started(self.key, self.config.owner)
        )
        if self.replay_end:
            log.info("%s: replaying unfinished flush up to %s", self.key, self.replay_end)
        reader = ShardReader(
            self.kinesis,
            self.stream,
            self.shard_id,
            self.window.state.base,
            self.config.get_records_limit,
            self.config.max_backoff,
            self._should_abandon,
        )
        while not self.lost.is_set():
            if self.stop_requested.is_set():
                if self.replay_end is not None:
                    self._finish_replay(reader)
                if self.replay_end is None:
                    self.flush("shutdown")
                return
            result = reader.read()
            self.millis_behind = result.millis_behind
            metrics.MILLIS_BEHIND.labels(self.stream, self.shard_id).set(result.millis_behind)
            self._consume(result)
            if self.buffer.empty:
                self.progress_at = time.monotonic()
            if self.replay_end is not None and not self.buffer.empty:
                self._fault("replay")
            if self._at_shard_end(result, reader.position):
                self.flush("shard_end")
                self._with_retries(
                    "checkpoint",
                    lambda: self.store.checkpoint(self.key, self.config.owner, SHARD_END),
                )
                self.finished = True
                log.info("%s: shard finished", self.key)
                return
            if self.replay_end is None:
                # A pending range is flushed whole, as it was recorded, never cut by a timer.
                if self.open_partitions_total() > self.max_open_partitions:
                    self.flush("open_partitions")
                reason = self.buffer.flush_reason(self.config.limits)
                if reason:
                    self.flush(reason)
            self._pause(result)

    def _should_abandon(self) -> bool:
        return self.lost.is_set() or self.stop_requested.is_set()

    def _consume(self, result: ReadResult) -> None:
        stream = self.stream
        user_count = 0
        byte_count = 0
        window = self.window
        for krec in result.records:
            if self.refill_end is not None:
                if int(krec.sequence) <= self.refill_end:
                    self._refill(krec)
                    continue
                self.refill_end = None
            if self.replay_end is not None and int(krec.sequence) > int(self.replay_end):
                # The pending range ended on a record we have already passed; close it first.
                self.flush("replay")
                self._end_replay()
            buffer = self.buffer
            for user in krec.user_records:
                byte_count += len(user.data)
                try:
                    self._add_user_record(buffer, window, krec, user)
                except Exception as exc:
                    # No record may stop the shard: whatever one raises sends it to the dead
                    # letter under the exception's name, and the records behind it go on.
                    metrics.RECORD_ERRORS.labels(stream, type(exc).__name__).inc()
                    log.exception(
                        "%s: record %s/%d failed", self.key, krec.sequence, user.sub_sequence
                    )
                    reason = f"processing failed: {type(exc).__name__}: {exc}"
                    routed = Routed(
                        dead_letter_partition(stream, krec.arrival), b"", reason=reason[:1000]
                    )
                    buffer.add(
                        routed,
                        krec.sequence,
                        user.sub_sequence,
                        user.data,
                        krec.arrival,
                        user.partition_key,
                    )
            user_count += len(krec.user_records)
            buffer.mark_record_done(krec.sequence)
            if self.replay_end is not None:
                # Neither count nor size cuts a pending range: its end is the only cut.
                if krec.sequence == self.replay_end:
                    self.flush("replay")
            elif (
                buffer.records >= self.config.limits.max_records
                or buffer.bytes >= self.config.limits.max_bytes
            ):
                self.flush("count" if buffer.records >= self.config.limits.max_records else "size")
        if result.records:
            metrics.KINESIS_RECORDS_IN.labels(stream).inc(len(result.records))
            metrics.RECORDS_IN.labels(stream).inc(user_count)
            metrics.BYTES_IN.labels(stream).inc(byte_count)

    def _add_user_record(
        self, buffer: ShardBuffer, window: DedupWindow, krec: KinesisRecord, user: UserRecord
    ) -> None:
        if user.error is not None:
            metrics.CORRUPT_AGGREGATES.labels(self.stream).inc()
            routed = Routed(
                dead_letter_partition(self.stream, krec.arrival), b"", reason=user.error
            )
        else:
            routed = route(user.data, krec.arrival, self.stream)
        if routed.event_id is not None and window.seen_before(event_key(routed.event_id)):
            buffer.duplicates += 1
            return
        buffer.add(
            routed, krec.sequence, user.sub_sequence, user.data, krec.arrival, user.partition_key
        )

    def _end_replay(self) -> None:
        """The pending range is written: from here on this process' own settings apply."""
        self.replay_end = None
        self.replay_compression = self.config.compression
        self.window.resize(self.config.dedup_window_records)

    def _finish_replay(self, reader: ShardReader) -> None:
        """A stop inside a pending range: read the rest of it, since it is flushed only whole.

        If the rest cannot be read before the shutdown deadline, nothing of the range is
        written and the lease keeps it pending for the next owner.
        """
        while self.replay_end is not None and not self.lost.is_set():
            deadline = self.shutdown_deadline()
            if deadline is not None and time.monotonic() > deadline:
                break
            result = reader.read()
            if not result.records and (result.shard_closed or result.millis_behind == 0):
                break
            self._consume(result)
        if self.replay_end is not None:
            log.warning(
                "%s: stopped inside the pending range ending at %s; left for the next owner",
                self.key,
                self.replay_end,
            )
            self.buffer = ShardBuffer(self.stream, self.shard_id)

    def _refill(self, krec: KinesisRecord) -> None:
        keys = []
        for user in krec.user_records:
            if user.error is not None:
                continue
            try:
                event_id = route(user.data, krec.arrival, self.stream).event_id
            except Exception:
                # _consume dead-lettered this record without an event_id; the window agrees.
                continue
            if event_id is not None:
                keys.append(event_key(event_id))
        self.window.refill(krec.sequence, keys)

    def _at_shard_end(self, result: ReadResult, position: str) -> bool:
        if result.shard_closed:
            return True
        # moto never returns a null NextShardIterator; a closed shard read up to its ending
        # sequence number is finished all the same.
        if self.ending_sequence is None or result.records:
            return False
        reached = 0 if position == TRIM_HORIZON else int(position)
        return reached >= int(self.ending_sequence)

    def _pause(self, result: ReadResult) -> None:
        behind = result.records and (result.millis_behind > 0 or result.limit_reached)
        if behind:
            return
        wait = self.config.poll_interval
        if not self.buffer.empty:
            wait = min(wait, max(0.0, self.config.limits.max_age_seconds - self.buffer.age()))
        self.stop_requested.wait(wait)

    # --- flushing -----------------------------------------------------------------------
    def flush(self, reason: str) -> None:
        buffer = self.buffer
        if buffer.empty:
            return
        end = buffer.last_sequence
        assert end is not None
        owner = self.config.owner
        replaying = self.replay_end is not None
        compression = self.replay_compression if replaying else self.config.compression
        window_records = self.window.max_records
        self._with_retries(
            "set_pending",
            lambda: self.store.set_pending(self.key, owner, end, compression, window_records),
        )
        objects = build_objects(self.stream, self.shard_id, buffer.partitions, compression)
        self._fault("before_upload")
        for index, obj in enumerate(objects):
            if index == 1:
                self._fault("between_uploads")
            self._upload(obj)
        self._fault("before_checkpoint")
        window = self.window.close(end)
        self._with_retries(
            "checkpoint", lambda: self.store.checkpoint(self.key, owner, end, window)
        )
        self.checkpoint = end
        self.progress_at = time.monotonic()
        if self.replay_end is not None and int(end) >= int(self.replay_end):
            self._end_replay()
        written = sum(obj.records for obj in objects if not obj.dead_letter)
        metrics.FLUSHES.labels(self.stream, reason).inc()
        metrics.RECORDS_OUT.labels(self.stream).inc(written)
        metrics.DEAD_LETTERS.labels(self.stream).inc(buffer.dead_letters)
        metrics.DUPLICATES_DROPPED.labels(self.stream).inc(buffer.duplicates)
        metrics.ARRIVAL_FALLBACKS.labels(self.stream).inc(buffer.arrival_fallbacks)
        metrics.OBJECTS_OUT.labels(self.stream).inc(len(objects))
        metrics.BYTES_OUT.labels(self.stream).inc(sum(len(obj.body) for obj in objects))
        log.debug(
            "%s: flushed %d records in %d objects (%s)", self.key, len(buffer), len(objects), reason
        )
        self.buffer = ShardBuffer(self.stream, self.shard_id)

    def _fault(self, step: str) -> None:
        if self.config.faults is not None:
            self.config.faults.pause(step, self.key, self.stop_requested, self.lost)

    def _upload(self, obj: LakeObject) -> None:
        content_type = "application/gzip" if obj.key.endswith(".gz") else "application/x-ndjson"
        self._with_retries(
            "PutObject",
            lambda: self.s3.put_object(
                Bucket=self.config.bucket, Key=obj.key, Body=obj.body, ContentType=content_type
            ),
        )

    def _with_retries(self, operation: str, call: Callable[[], T]) -> T:
        """Retry transient AWS errors until they pass, the lease is lost or shutdown runs out."""
        attempt = 0
        while True:
            try:
                return call()
            except LeaseLost:
                raise
            except (ClientError, BotoCoreError) as exc:
                cause = (
                    exc.response.get("Error", {}).get("Code", "client_error")
                    if isinstance(exc, ClientError)
                    else type(exc).__name__
                )
                metrics.RETRIES.labels(operation, cause).inc()
                log.warning("%s: %s failed (%s), retrying", self.key, operation, cause)
            if self.lost.is_set():
                raise FlushAborted(f"lease lost during {operation}")
            deadline = self.shutdown_deadline()
            if deadline is not None and time.monotonic() > deadline:
                raise FlushAborted(f"shutdown deadline passed during {operation}")
            time.sleep(backoff_delay(attempt, base=0.1, cap=self.config.max_backoff))
            attempt += 1


def stored_window(lease: Lease) -> WindowState:
    """The lease's duplicate window if it was written with this checkpoint, else an empty one."""
    window = lease.window
    if window is not None:
        end = window.marks[-1].sequence if window.marks else window.base
        if end == lease.checkpoint:
            return window
    return WindowState(lease.checkpoint)

"""The Kinesis producer: the ``put()`` path on the callers' threads, and the sender thread that
drives the other modules (see the package's docstring for the whole design).

``put()`` only encodes the record, reserves room under the in-flight byte limit and appends it
to a queue. The sender thread drains the queue into the lanes of the shard map
(:mod:`.shard_map`), builds calls (:mod:`.batching`) for the lanes that are free and not backing
off, and hands them to an executor; each call's answer is classified and settled
(:mod:`.outcomes`), then applied here: results to the callers, retries back on the lane.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson
from botocore.config import Config

from stages.common import aws
from stages.common.config import Settings, get_settings
from stages.common.retry import backoff_delay
from stages.ingestion.producer.batching import (
    DEFAULT_AGGREGATION_MAX_BYTES,
    MAX_CALL_BYTES,
    MAX_PARTITION_KEY_CHARS,
    MAX_RECORD_BYTES,
    Entry,
    build_call,
)
from stages.ingestion.producer.errors import ProducerClosed, ProducerFull, PutResult, RecordTooLarge
from stages.ingestion.producer.metrics import ProducerMetrics
from stages.ingestion.producer.outcomes import (
    CALL_ERRORS,
    CallOutcome,
    classify_error,
    classify_response,
    settle,
)
from stages.ingestion.producer.results import Item, ProducerStats, PutBatch, UserRecord, resolve
from stages.ingestion.producer.shard_map import Lane, ShardMap, list_open_shards

log = logging.getLogger(__name__)

# Parameter validation walks every entry of every call in Python; the entries are built here and
# the service validates them anyway.
_PRODUCER_CLIENT_CONFIG = Config(parameter_validation=False)


class KinesisProducer:
    """Puts JSON records on one Kinesis stream; see the module docstring for how.

    Thread-safe: any number of threads may call ``put``/``put_many`` concurrently.
    """

    def __init__(
        self,
        stream_name: str,
        settings: Settings | None = None,
        *,
        client: Any | None = None,
        aggregate: bool | None = None,
        linger_ms: int | None = None,
        max_in_flight_bytes: int | None = None,
        max_retries: int | None = None,
        max_backoff_seconds: float | None = None,
        base_backoff_seconds: float = 0.05,
        put_timeout: float = 5.0,
        aggregation_max_bytes: int = DEFAULT_AGGREGATION_MAX_BYTES,
        shard_refresh_seconds: float = 60.0,
        max_workers: int = 8,
        retry_after_seconds: float = 1.0,
    ) -> None:
        settings = settings or get_settings()
        self.stream_name = stream_name
        self._client = client or aws.client(
            "kinesis", settings, retries=False, config=_PRODUCER_CLIENT_CONFIG
        )
        self._aggregate = settings.producer_aggregate if aggregate is None else aggregate
        self._linger = (settings.producer_linger_ms if linger_ms is None else linger_ms) / 1000
        self._max_in_flight = (
            settings.producer_max_in_flight_bytes
            if max_in_flight_bytes is None
            else max_in_flight_bytes
        )
        self._max_retries = settings.producer_max_retries if max_retries is None else max_retries
        self._max_backoff = (
            settings.producer_max_backoff_seconds
            if max_backoff_seconds is None
            else max_backoff_seconds
        )
        self._base_backoff = base_backoff_seconds
        self._put_timeout = put_timeout
        self._retry_after = retry_after_seconds
        if not 1024 <= aggregation_max_bytes <= MAX_RECORD_BYTES:
            raise ValueError(f"aggregation_max_bytes must be in [1024, {MAX_RECORD_BYTES}]")
        self._agg_max = aggregation_max_bytes
        self._refresh_every = shard_refresh_seconds
        # Wake the sender before the linger expires once this much is queued: a full call's worth.
        self._eager_bytes = min(MAX_CALL_BYTES, max(64 * 1024, self._max_in_flight // 4))
        self._rng = random.Random()

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the sender waits here
        self._space = threading.Condition(self._lock)  # put() waits here for in-flight room
        self._idle = threading.Condition(self._lock)  # flush() waits here
        self._incoming: list[UserRecord] = []
        self._incoming_bytes = 0
        self._incoming_since = 0.0
        self._in_flight_bytes = 0
        self._outstanding = 0
        self._space_waiters = 0
        self._flushing = 0
        self._closing = False
        self._stopping = False

        self._shards = ShardMap()
        self._map_stale = False
        self._next_refresh = 0.0
        self._refresh_not_before = 0.0

        self._metrics = ProducerMetrics(stream_name)

        self._refresh_shard_map()
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=f"kinesis-put-{stream_name}"
        )
        self._sender = threading.Thread(
            target=self._run, name=f"kinesis-producer-{stream_name}", daemon=True
        )
        self._sender.start()

    # --- Public API -----------------------------------------------------------------------------
    def put(
        self,
        record: Mapping[str, Any] | bytes | str,
        *,
        partition_key: str | None = None,
        timeout: float | None = None,
    ) -> Future[PutResult]:
        """Queue one record; the future resolves with its :class:`PutResult` once acknowledged.

        A mapping is sent as compact JSON with its ``service`` as partition key unless
        ``partition_key`` is given; bytes or str need ``partition_key``. Raises
        :class:`RecordTooLarge` at once for records over 1 MiB (data + key) and
        :class:`ProducerFull` if no room frees up within ``timeout`` (default: the producer's
        ``put_timeout``). The future fails with :class:`PutFailed` or :class:`ProducerClosed`.
        """
        partition_key, key_bytes, data, size = self._encode(record, partition_key, None)
        future: Future[PutResult] = Future()
        self._admit([(partition_key, key_bytes, data, size, future, -1)], size, timeout)
        return future

    def submit_many(self, items: Iterable[Item], *, timeout: float | None = None) -> PutBatch:
        """Queue a batch all-or-nothing and return its :class:`PutBatch` without waiting.

        Items are records (mappings) or ``(partition_key, data)`` pairs. Every item is checked
        before any is queued; a batch larger than the in-flight limit is admitted only when
        nothing else is in flight.
        """
        encode = self._encode
        encoded = [
            encode(item, None, index)
            if type(item) is dict or (type(item) is not tuple and isinstance(item, Mapping))
            else encode(item[1], item[0], index)  # type: ignore[index]
            for index, item in enumerate(items)
        ]
        batch = PutBatch(len(encoded))
        if encoded:
            records = [
                (pk, kb, data, size, batch, i) for i, (pk, kb, data, size) in enumerate(encoded)
            ]
            self._admit(records, sum(e[3] for e in encoded), timeout)
        return batch

    def put_many(self, items: Iterable[Item], *, timeout: float | None = None) -> list[PutResult]:
        """Put a batch and wait for Kinesis to acknowledge all of it.

        ``timeout`` bounds the whole call (admission and acknowledgement). Raises
        :class:`RecordTooLarge` or :class:`ProducerFull` with nothing queued, or
        :class:`BatchPutError` naming the records that failed or were still pending.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        batch = self.submit_many(items, timeout=timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return batch.result(remaining)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything now and wait until nothing is outstanding; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flushing += 1
            self._wake.notify()
            try:
                while self._outstanding:
                    if deadline is None:
                        self._idle.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._idle.wait(remaining)
                return True
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting records, send what is queued (up to ``timeout``), then stop.

        Records still unsent when the timeout expires fail with :class:`ProducerClosed`; calls
        already in flight are waited for, so their results are true.
        """
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
                self._space.notify_all()
                self._wake.notify()
        if already:
            self._sender.join()
            return
        self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._sender.join()
        self._executor.shutdown(wait=True)
        leftovers: list[UserRecord] = []
        with self._lock:
            leftovers += self._incoming
            self._incoming = []
            self._incoming_bytes = 0
            for lane in self._shards.lanes.values():
                leftovers += lane.records
                lane.records.clear()
                lane.records_bytes = 0
                for entry in lane.retries:
                    leftovers += entry.records
                lane.retries = []
        if leftovers:
            error = ProducerClosed(
                f"producer for {self.stream_name} closed before the record was acknowledged"
            )
            resolve(leftovers, None, error)
            self._finish(leftovers, failed=len(leftovers))
        self._metrics.in_flight_bytes(0)

    def __enter__(self) -> KinesisProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> ProducerStats:
        with self._lock:
            in_flight = self._in_flight_bytes
            outstanding = self._outstanding
            shards = self._shards.open_shard_count()
        counts = self._metrics.snapshot()
        return ProducerStats(
            stream=self.stream_name,
            in_flight_bytes=in_flight,
            in_flight_records=outstanding,
            open_shards=shards,
            **counts,
        )

    def shard_map(self) -> list[tuple[str, int, int]]:
        """The open shards the producer routes to: (shard id, starting, ending hash key)."""
        with self._lock:
            return self._shards.shards()

    # --- put() path -----------------------------------------------------------------------------
    def _encode(
        self, record: object, partition_key: str | None, index: int | None
    ) -> tuple[str, bytes, bytes, int]:
        # Exact type checks first: isinstance() against the Mapping ABC costs about a microsecond.
        record_type = type(record)
        if record_type is dict:
            data = orjson.dumps(record)
            if partition_key is None:
                partition_key = record.get("service")  # type: ignore[attr-defined]
        elif record_type is bytes:
            data = record  # type: ignore[assignment]
        elif isinstance(record, Mapping):
            data = orjson.dumps(dict(record))  # orjson serialises dicts, not other mappings
            if partition_key is None:
                partition_key = record.get("service")
        elif isinstance(record, str):
            data = record.encode("utf-8")
        elif isinstance(record, bytearray | memoryview):
            data = bytes(record)
        else:
            raise TypeError(f"cannot put a {type(record).__name__}; use a mapping, bytes or str")
        if not isinstance(partition_key, str) or not partition_key:
            where = f"record #{index}" if index is not None else "record"
            raise ValueError(
                f"{where} has no partition key (a non-empty 'service' or partition_key)"
            )
        if len(partition_key) > MAX_PARTITION_KEY_CHARS:
            raise ValueError(f"partition key longer than {MAX_PARTITION_KEY_CHARS} characters")
        key_bytes = partition_key.encode("utf-8")
        size = len(data) + len(key_bytes)
        if size > MAX_RECORD_BYTES:
            self._metrics.rejected_oversize()
            raise RecordTooLarge(size, MAX_RECORD_BYTES, index)
        return partition_key, key_bytes, data, size

    def _admit(self, records: list[UserRecord], size: int, timeout: float | None) -> None:
        with self._lock:
            if self._closing:
                raise ProducerClosed(f"producer for {self.stream_name} is closed")
            if self._in_flight_bytes and self._in_flight_bytes + size > self._max_in_flight:
                self._wait_for_room(size, self._put_timeout if timeout is None else timeout)
            self._in_flight_bytes += size
            self._outstanding += len(records)
            if self._incoming:
                self._incoming += records
                self._incoming_bytes += size
                if self._incoming_bytes >= self._eager_bytes:
                    self._wake.notify()
            else:
                self._incoming = records
                self._incoming_bytes = size
                self._incoming_since = time.monotonic()
                self._wake.notify()
        self._metrics.admitted(len(records), size)

    def _wait_for_room(self, size: int, timeout: float) -> None:
        """Called with the lock held; returns with room reserved-for or raises."""
        self._metrics.backpressure_wait()
        deadline = time.monotonic() + timeout
        self._space_waiters += 1
        try:
            while self._in_flight_bytes and self._in_flight_bytes + size > self._max_in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._metrics.backpressure_rejection()
                    raise ProducerFull(
                        f"Kinesis producer for {self.stream_name} is full: "
                        f"{self._in_flight_bytes} bytes buffered or in flight "
                        f"(limit {self._max_in_flight}); waited {timeout:.2f}s",
                        retry_after=self._retry_after,
                    )
                self._space.wait(remaining)
                if self._closing:
                    raise ProducerClosed(f"producer for {self.stream_name} is closed")
        finally:
            self._space_waiters -= 1

    # --- Sender thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                if not self._iterate():
                    return
            except Exception:
                log.exception("Kinesis producer sender loop failed (stream %s)", self.stream_name)
                time.sleep(0.1)

    def _iterate(self) -> bool:
        with self._lock:
            while True:
                if self._stopping:
                    return False
                now = time.monotonic()
                wait = self._pending_work(now)
                if wait == 0:
                    break
                self._wake.wait(wait)
            drained: list[UserRecord] = []
            if self._incoming and self._drain_due(now):
                drained, self._incoming = self._incoming, []
                self._incoming_bytes = 0
            refresh = self._refresh_due(now)
        if refresh:
            self._refresh_shard_map()
        if drained:
            self._shards.route(drained)
        self._collect_retired()
        self._dispatch()
        self._metrics.in_flight_bytes(self._in_flight_bytes)
        return True

    def _drain_due(self, now: float) -> bool:
        return bool(
            self._flushing
            or self._closing
            or now - self._incoming_since >= self._linger
            or self._incoming_bytes >= self._eager_bytes
        )

    def _refresh_due(self, now: float) -> bool:
        if now < self._refresh_not_before:
            return False
        return self._map_stale or now >= self._next_refresh

    def _pending_work(self, now: float) -> float | None:
        """0 if the sender has something to do now, else how long it may sleep (None: forever)."""
        wait: float | None = None

        def sooner(seconds: float) -> None:
            nonlocal wait
            wait = seconds if wait is None else min(wait, seconds)

        if self._incoming:
            if self._drain_due(now):
                return 0
            sooner(self._incoming_since + self._linger - now)
        if self._refresh_due(now):
            return 0
        sooner(max(self._next_refresh, self._refresh_not_before) - now)
        for lane in self._shards.lanes.values():
            if lane.busy or not (lane.records or lane.retries):
                continue
            if lane.retired or now >= lane.not_before:
                return 0
            sooner(lane.not_before - now)
        return max(wait, 0.001) if wait is not None else None

    def _refresh_shard_map(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._refresh_not_before = now + 1.0
            self._next_refresh = now + self._refresh_every
        try:
            shards = list_open_shards(self._client, self.stream_name)
        except Exception as exc:
            log.warning(
                "ListShards on %s failed, keeping the old shard map: %s", self.stream_name, exc
            )
            with self._lock:
                self._map_stale = True
            return
        with self._lock:
            self._map_stale = False
            current = sorted(self._shards.shards())
        self._metrics.shard_map_refreshed()
        if sorted(shards) != current:
            log.info("stream %s: routing to %d open shards", self.stream_name, len(shards))
            with self._lock:
                self._shards.install(shards)

    def _collect_retired(self) -> None:
        """Move what waits in retired (closed-shard) lanes to the lanes of the new map."""
        with self._lock:
            lanes = self._shards.lanes
            idle = [lane for lane in lanes.values() if lane.retired and not lane.busy]
            if not idle:
                return
            retries: list[Entry] = []
            for lane in idle:
                del lanes[lane.shard_id]
                retries += lane.retries
                lane.retries = []
            for entry in retries:
                self._shards.lane_for_hash(entry.hash_key).retries.append(entry)
        for lane in idle:
            records = list(lane.records)
            lane.records.clear()
            lane.records_bytes = 0
            self._shards.route(records)

    def _dispatch(self) -> None:
        now = time.monotonic()
        ready: list[tuple[Lane, list[Entry]]] = []
        with self._lock:
            for lane in self._shards.lanes.values():
                if lane.busy or lane.retired or now < lane.not_before:
                    continue
                if not (lane.records or lane.retries):
                    continue
                lane.busy = True
                ready.append((lane, lane.retries))
                lane.retries = []
        for lane, retries in ready:
            entries, leftover = build_call(
                lane,
                retries,
                aggregate=self._aggregate,
                aggregation_max_bytes=self._agg_max,
                hash_of=self._shards.hash,
            )
            if leftover or not entries:
                with self._lock:
                    lane.retries[:0] = leftover
                    if not entries:
                        lane.busy = False
            if entries:
                self._executor.submit(self._send, lane, entries)

    # --- Executor threads -----------------------------------------------------------------------
    def _send(self, lane: Lane, entries: list[Entry]) -> None:
        try:
            self._send_call(lane, entries)
        except Exception:
            # Should not happen; but never leave records (and the lane) hanging.
            log.exception("Kinesis producer send failed unexpectedly (stream %s)", self.stream_name)
            with self._lock:
                lane.busy = False
                lane.retries.extend(entries)
                lane.not_before = time.monotonic() + self._max_backoff
                self._wake.notify()

    def _send_call(self, lane: Lane, entries: list[Entry]) -> None:
        started = time.monotonic()
        try:
            response = self._client.put_records(
                StreamName=self.stream_name, Records=[entry.request for entry in entries]
            )
        except CALL_ERRORS as exc:
            outcome = classify_error(entries, exc)
        else:
            outcome = classify_response(entries, response, lane.shard_id)
        self._metrics.call_seconds(time.monotonic() - started)
        if outcome.call_error:
            log.log(
                logging.DEBUG if outcome.call_throttled else logging.WARNING,
                "PutRecords on %s failed (%s); %d entries will be retried",
                self.stream_name,
                outcome.call_error,
                len(outcome.failed),
            )
        self._apply(lane, outcome)

    def _apply(self, lane: Lane, outcome: CallOutcome) -> None:
        """Answer the callers of what is settled; put the rest back on the lane, backed off."""
        settled = settle(outcome, max_retries=self._max_retries, stream=self.stream_name)
        done: list[UserRecord] = []
        for entry, result in settled.acked:
            resolve(entry.records, result, None)
            done += entry.records
        acked_records = len(done)
        for entry, error in settled.gave_up:
            resolve(entry.records, None, error)
            done += entry.records
        retry = settled.retry
        with self._lock:
            lane.busy = False
            if retry:
                lane.retries.extend(retry)
                attempt = max(entry.attempts for entry in retry)
                lane.not_before = time.monotonic() + self._backoff(attempt)
            if outcome.stale_map:
                self._map_stale = True
            self._wake.notify()
        self._metrics.call_done(outcome, retried=len(retry))
        self._finish(done, failed=len(done) - acked_records)

    def _finish(self, records: list[UserRecord], *, failed: int) -> None:
        """Release resolved records' bytes; wake put() waiters and flush()."""
        if not records:
            return
        size = sum(rec[3] for rec in records)
        # Counted before the records stop being outstanding, so stats() after flush() sees them.
        self._metrics.finished(len(records) - failed, failed)
        with self._lock:
            self._in_flight_bytes -= size
            self._outstanding -= len(records)
            if self._space_waiters:
                self._space.notify_all()
            if not self._outstanding:
                self._idle.notify_all()
            in_flight = self._in_flight_bytes
        self._metrics.in_flight_bytes(in_flight)

    def _backoff(self, attempt: int) -> float:
        """The shared policy's delay before retry ``attempt`` (1 for the first)."""
        return backoff_delay(
            attempt - 1, base=self._base_backoff, cap=self._max_backoff, rng=self._rng
        )

"""A shard-aware, KPL-compatible Kinesis producer.

One :class:`KinesisProducer` per stream. ``put()`` only encodes the record, reserves room under
the in-flight byte limit and appends it to a queue; a background sender thread does everything
else:

* **Routing.** The producer keeps a map of the stream's open shards (``ListShards``; refreshed
  periodically, when Kinesis reports a record on a shard the map did not predict, and after
  call-level errors). Each user record's shard is computed the way Kinesis does it: the MD5 of
  the partition key as a 128-bit big-endian integer, looked up in the shards' hash key ranges.
* **Aggregation.** Records of the *same* shard are packed into KPL aggregated records (magic,
  ``AggregatedRecord`` protobuf, MD5 digest: exactly the ``aws-kinesis-agg`` format) that are put
  with an ``ExplicitHashKey`` inside that shard's range, so a deaggregating consumer sees every
  user record on the shard it would have landed on without aggregation. An aggregate of a single
  record is sent as the plain record (as the KPL does), and so is everything while no shard map
  is known.
* **Batching.** ``PutRecords`` calls stay within 500 entries and 5 MiB (data plus partition
  keys). At most one call per shard is in flight: it keeps per-shard order for the non-retried
  path, lets records pile up into fuller calls while the shard is busy, and is gentle on
  emulators whose shards are not safe for concurrent writers.
* **Retries.** A partial failure re-sends only the failed entries; whole-call errors (throttling,
  5xx, connection errors) re-send the call's entries. Both back off with capped exponential
  backoff and full jitter, per shard. After ``producer_max_retries`` retries the records' results
  fail with :class:`PutFailed`; nothing is dropped silently.
* **Backpressure.** Buffered plus in-flight bytes are bounded; ``put()`` waits up to its timeout
  for room and then raises :class:`ProducerFull`.

The aggregate format (and why it is encoded by hand) is :mod:`stages.common.kpl`; the producer
inlines that encoding in its hottest loop.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from prometheus_client import Counter, Gauge, Histogram

from stages.common import aws
from stages.common.config import Settings, get_settings
from stages.common.kpl import OVERHEAD, VARINT_TABLE_SIZE, VARINTS, encode_varint, seal
from stages.common.resources import KINESIS_MAX_RECORD_BYTES
from stages.common.retry import backoff_delay

log = logging.getLogger(__name__)

# --- Kinesis limits -----------------------------------------------------------------------------
MAX_RECORD_BYTES = KINESIS_MAX_RECORD_BYTES
MAX_CALL_RECORDS = 500
MAX_CALL_BYTES = 5 * 1024 * 1024  # data + partition keys of one PutRecords call
MAX_PARTITION_KEY_CHARS = 256
HASH_KEY_SPACE = 1 << 128

DEFAULT_AGGREGATION_MAX_BYTES = 256 * 1024

_THROTTLE_CODES = frozenset(
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
_FATAL_CODES = frozenset(
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
_STALE_MAP_CODES = frozenset({"ResourceNotFoundException", "InvalidArgumentException"})

# --- Prometheus metrics (module level: one set per process, one label value per stream) ---------
_M_RECORDS = Counter("kinesis_producer_records_total", "User records accepted by put()", ["stream"])
_M_BYTES = Counter(
    "kinesis_producer_bytes_total", "User record bytes (data + key) accepted", ["stream"]
)
_M_ACKED = Counter(
    "kinesis_producer_records_acknowledged_total",
    "User records acknowledged by Kinesis",
    ["stream"],
)
_M_KINESIS_RECORDS = Counter(
    "kinesis_producer_kinesis_records_total",
    "Kinesis records acknowledged (an aggregated record carries many user records)",
    ["stream", "aggregated"],
)
_M_CALLS = Counter(
    "kinesis_producer_put_records_calls_total",
    "PutRecords calls by outcome (ok, partial, error)",
    ["stream", "outcome"],
)
_M_CALL_SECONDS = Histogram(
    "kinesis_producer_put_records_seconds",
    "PutRecords call latency",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_M_RETRIED = Counter(
    "kinesis_producer_retried_entries_total",
    "Kinesis entries scheduled for another attempt",
    ["stream"],
)
_M_THROTTLED = Counter(
    "kinesis_producer_throttled_total",
    "Throttling answers: whole calls (scope=call) and single entries (scope=entry)",
    ["stream", "scope"],
)
_M_FAILED = Counter(
    "kinesis_producer_failed_records_total",
    "User records whose put failed for good (retries exhausted, fatal error or close)",
    ["stream"],
)
_M_OVERSIZE = Counter(
    "kinesis_producer_rejected_oversize_total",
    "Records rejected for exceeding the 1 MiB Kinesis record limit",
    ["stream"],
)
_M_BP_WAITS = Counter(
    "kinesis_producer_backpressure_waits_total",
    "put() calls that had to wait for in-flight room",
    ["stream"],
)
_M_BP_REJECTIONS = Counter(
    "kinesis_producer_backpressure_rejections_total",
    "put() calls that gave up waiting and raised ProducerFull",
    ["stream"],
)
_M_IN_FLIGHT = Gauge(
    "kinesis_producer_in_flight_bytes",
    "User record bytes buffered or in flight",
    ["stream"],
)
_M_MAP_REFRESHES = Counter(
    "kinesis_producer_shard_map_refreshes_total", "ListShards refreshes", ["stream"]
)


# --- Public types ------------------------------------------------------------------------------
class PutResult(NamedTuple):
    """Where Kinesis stored a record (for aggregated records: the aggregate's position)."""

    shard_id: str
    sequence_number: str


class ProducerError(Exception):
    """Base class of everything this module raises on purpose."""


class RecordTooLarge(ProducerError, ValueError):
    """A record above Kinesis' per-record limit (data plus partition key)."""

    def __init__(self, size: int, limit: int = MAX_RECORD_BYTES, index: int | None = None) -> None:
        self.size = size
        self.limit = limit
        self.index = index
        where = f"record #{index}" if index is not None else "record"
        super().__init__(
            f"{where} is {size} bytes (data + partition key); the Kinesis limit is {limit} bytes"
        )


class ProducerFull(ProducerError):
    """No room under the in-flight byte limit within the timeout; the caller should retry later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProducerClosed(ProducerError):
    """The producer is closing or closed, or closed before the record was acknowledged."""


class PutFailed(ProducerError):
    """Kinesis did not acknowledge the record: retries exhausted or a non-retryable error."""

    def __init__(self, message: str, error_code: str, attempts: int) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.attempts = attempts


class BatchPutError(ProducerError):
    """Some records of a ``put_many`` batch failed or were not acknowledged within the timeout.

    ``results[i]`` is the acknowledged position of record ``i`` or None; ``errors`` maps the
    indexes that failed for good to their exception; ``pending`` lists the indexes still in
    flight when the timeout expired (they may still be written).
    """

    def __init__(
        self,
        results: list[PutResult | None],
        errors: dict[int, BaseException],
        pending: list[int],
    ) -> None:
        self.results = results
        self.errors = errors
        self.pending = pending
        first = next(iter(errors.values()), None)
        super().__init__(
            f"{len(errors)} of {len(results)} records failed, {len(pending)} still pending"
            + (f" (first error: {first})" if first is not None else "")
        )


class PutBatch:
    """The results of a ``submit_many`` batch, filled in by the producer as Kinesis answers.

    A lighter stand-in for one ``Future`` per record (those cost ~3.5 us each to create and
    resolve, a large share of the per-record budget).
    """

    def __init__(self, size: int) -> None:
        self.results: list[PutResult | None] = [None] * size
        self.errors: dict[int, BaseException] = {}
        self._remaining = size
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[PutBatch], Any]] = []
        if size == 0:
            self._done.set()

    def __len__(self) -> int:
        return len(self.results)

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every record is acknowledged or failed; False on timeout."""
        return self._done.wait(timeout)

    def pending(self) -> list[int]:
        with self._lock:
            return [i for i, r in enumerate(self.results) if r is None and i not in self.errors]

    def result(self, timeout: float | None = None) -> list[PutResult]:
        """Every record's position, or :class:`BatchPutError` naming what failed or is pending."""
        self.wait(timeout)
        with self._lock:
            if self._remaining == 0 and not self.errors:
                return list(self.results)  # type: ignore[arg-type]
            results = list(self.results)
            errors = dict(self.errors)
        pending = [i for i, r in enumerate(results) if r is None and i not in errors]
        raise BatchPutError(results, errors, pending)

    def add_done_callback(self, fn: Callable[[PutBatch], Any]) -> None:
        """Call ``fn(batch)`` once every record is resolved (at once if already done)."""
        with self._lock:
            if self._remaining:
                self._callbacks.append(fn)
                return
        fn(self)

    def _resolve(
        self, indexes: list[int], result: PutResult | None, error: BaseException | None
    ) -> None:
        results = self.results
        errors = self.errors
        with self._lock:
            for index in indexes:
                if results[index] is not None or index in errors:
                    continue
                if error is None:
                    results[index] = result
                else:
                    errors[index] = error
                self._remaining -= 1
            if self._remaining:
                return
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("PutBatch done callback failed")


@dataclass(frozen=True)
class ProducerStats:
    stream: str
    records_put: int
    bytes_put: int
    records_acknowledged: int
    records_failed: int
    kinesis_records_put: int
    aggregated_records_put: int
    put_records_calls: int
    put_records_call_errors: int
    put_records_partial_failures: int
    retried_entries: int
    throttled_calls: int
    throttled_entries: int
    rejected_oversize: int
    backpressure_waits: int
    backpressure_rejections: int
    in_flight_bytes: int
    in_flight_records: int
    shard_map_refreshes: int
    open_shards: int

    @property
    def throttled(self) -> int:
        return self.throttled_calls + self.throttled_entries


# --- Internals ---------------------------------------------------------------------------------
# A user record: (partition key, its UTF-8 bytes, data, data+key size, sink, index in sink).
# Plain tuples: this is created once per record on the caller's thread, so it must be cheap.
_UserRecord = tuple[str, bytes, bytes, int, "Future[PutResult] | PutBatch", int]
Item = Mapping[str, Any] | tuple[str, bytes | str]


def partition_key_hash(partition_key: str) -> int:
    """Kinesis' hash of a partition key: MD5 as an unsigned 128-bit big-endian integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


class _Entry:
    """One Kinesis record of a PutRecords call (aggregated or plain) and its user records."""

    __slots__ = ("aggregated", "attempts", "hash_key", "last_error", "records", "request", "size")

    def __init__(
        self,
        data: bytes,
        partition_key: str,
        explicit_hash_key: int | None,
        hash_key: int,
        size: int,
        records: list[_UserRecord],
    ) -> None:
        self.request: dict[str, Any] = {"Data": data, "PartitionKey": partition_key}
        if explicit_hash_key is not None:
            self.request["ExplicitHashKey"] = str(explicit_hash_key)
        self.aggregated = explicit_hash_key is not None
        self.hash_key = hash_key
        self.size = size
        self.records = records
        self.attempts = 0
        self.last_error = ""


class _Lane:
    """The send queue of one open shard (or, while no shard map is known, of the whole stream)."""

    __slots__ = ("busy", "end", "not_before", "records", "records_bytes", "retired", "retries",
                 "shard_id", "start")  # fmt: skip

    def __init__(self, shard_id: str | None, start: int, end: int) -> None:
        self.shard_id = shard_id
        self.start = start
        self.end = end
        # Only the sender thread touches ``records``; the rest is guarded by the producer's lock.
        self.records: deque[_UserRecord] = deque()
        self.records_bytes = 0
        self.retries: list[_Entry] = []
        self.busy = False
        self.not_before = 0.0
        self.retired = False


# Parameter validation walks every entry of every call in Python; the entries are built here and
# the service validates them anyway.
_PRODUCER_CLIENT_CONFIG = Config(parameter_validation=False)


def _resolve(
    records: list[_UserRecord], result: PutResult | None, error: BaseException | None
) -> None:
    """Hand ``result`` (or ``error``) to every record's future or batch.

    Records of one batch usually sit next to each other, so they are resolved in runs: one lock
    round-trip per run instead of per record.
    """
    batch: PutBatch | None = None
    run: list[int] = []
    for rec in records:
        sink = rec[4]
        if sink is batch:
            run.append(rec[5])
            continue
        if batch is not None:
            batch._resolve(run, result, error)
            batch = None
        if type(sink) is PutBatch:
            batch = sink
            run = [rec[5]]
        elif not sink.done():  # a future the caller cancelled is left alone; the record is sent
            try:
                if error is None:
                    sink.set_result(result)  # type: ignore[union-attr]
                else:
                    sink.set_exception(error)  # type: ignore[union-attr]
            except InvalidStateError:
                pass
    if batch is not None:
        batch._resolve(run, result, error)


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
        self._incoming: list[_UserRecord] = []
        self._incoming_bytes = 0
        self._incoming_since = 0.0
        self._in_flight_bytes = 0
        self._outstanding = 0
        self._space_waiters = 0
        self._flushing = 0
        self._closing = False
        self._stopping = False

        # Shard map: lanes by shard id, plus sorted starting hash keys for routing.
        self._lanes: dict[str | None, _Lane] = {}
        self._route_starts: list[int] = []
        self._route_lanes: list[_Lane] = []
        self._pk_lane: dict[str, _Lane] = {}
        self._pk_hash: dict[str, int] = {}
        self._map_stale = False
        self._next_refresh = 0.0
        self._refresh_not_before = 0.0

        self._counts: dict[str, int] = dict.fromkeys(
            (
                "records_put",
                "bytes_put",
                "records_acknowledged",
                "records_failed",
                "kinesis_records_put",
                "aggregated_records_put",
                "put_records_calls",
                "put_records_call_errors",
                "put_records_partial_failures",
                "retried_entries",
                "throttled_calls",
                "throttled_entries",
                "rejected_oversize",
                "backpressure_waits",
                "backpressure_rejections",
                "shard_map_refreshes",
            ),
            0,
        )

        label = {"stream": stream_name}
        self._m_records = _M_RECORDS.labels(**label)
        self._m_bytes = _M_BYTES.labels(**label)
        self._m_acked = _M_ACKED.labels(**label)
        self._m_kinesis = {
            True: _M_KINESIS_RECORDS.labels(stream=stream_name, aggregated="true"),
            False: _M_KINESIS_RECORDS.labels(stream=stream_name, aggregated="false"),
        }
        self._m_calls = {
            o: _M_CALLS.labels(stream=stream_name, outcome=o) for o in ("ok", "partial", "error")
        }
        self._m_call_seconds = _M_CALL_SECONDS.labels(**label)
        self._m_retried = _M_RETRIED.labels(**label)
        self._m_throttled_call = _M_THROTTLED.labels(stream=stream_name, scope="call")
        self._m_throttled_entry = _M_THROTTLED.labels(stream=stream_name, scope="entry")
        self._m_failed = _M_FAILED.labels(**label)
        self._m_oversize = _M_OVERSIZE.labels(**label)
        self._m_bp_waits = _M_BP_WAITS.labels(**label)
        self._m_bp_rejections = _M_BP_REJECTIONS.labels(**label)
        self._m_in_flight = _M_IN_FLIGHT.labels(**label)
        self._m_refreshes = _M_MAP_REFRESHES.labels(**label)

        self._set_lanes(None)
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
        leftovers: list[_UserRecord] = []
        with self._lock:
            leftovers += self._incoming
            self._incoming = []
            self._incoming_bytes = 0
            for lane in self._lanes.values():
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
            _resolve(leftovers, None, error)
            self._finish(leftovers, failed=len(leftovers))
        self._m_in_flight.set(0)

    def __enter__(self) -> KinesisProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> ProducerStats:
        with self._lock:
            counts = dict(self._counts)
            in_flight = self._in_flight_bytes
            outstanding = self._outstanding
            shards = sum(1 for k, lane in self._lanes.items() if k is not None and not lane.retired)
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
            return [
                (lane.shard_id, lane.start, lane.end) for lane in self._route_lanes if lane.shard_id
            ]

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
            with self._lock:
                self._counts["rejected_oversize"] += 1
            self._m_oversize.inc()
            raise RecordTooLarge(size, MAX_RECORD_BYTES, index)
        return partition_key, key_bytes, data, size

    def _admit(self, records: list[_UserRecord], size: int, timeout: float | None) -> None:
        with self._lock:
            if self._closing:
                raise ProducerClosed(f"producer for {self.stream_name} is closed")
            if self._in_flight_bytes and self._in_flight_bytes + size > self._max_in_flight:
                self._wait_for_room(size, self._put_timeout if timeout is None else timeout)
            self._in_flight_bytes += size
            self._outstanding += len(records)
            self._counts["records_put"] += len(records)
            self._counts["bytes_put"] += size
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

    def _wait_for_room(self, size: int, timeout: float) -> None:
        """Called with the lock held; returns with room reserved-for or raises."""
        self._counts["backpressure_waits"] += 1
        self._m_bp_waits.inc()
        deadline = time.monotonic() + timeout
        self._space_waiters += 1
        try:
            while self._in_flight_bytes and self._in_flight_bytes + size > self._max_in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._counts["backpressure_rejections"] += 1
                    self._m_bp_rejections.inc()
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
            drained: list[_UserRecord] = []
            if self._incoming and self._drain_due(now):
                drained, self._incoming = self._incoming, []
                self._incoming_bytes = 0
            refresh = self._refresh_due(now)
        if drained:
            self._m_records.inc(len(drained))
            self._m_bytes.inc(sum(rec[3] for rec in drained))
        if refresh:
            self._refresh_shard_map()
        if drained:
            self._route(drained)
        self._collect_retired()
        self._dispatch()
        self._m_in_flight.set(self._in_flight_bytes)
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
        for lane in self._lanes.values():
            if lane.busy or not (lane.records or lane.retries):
                continue
            if lane.retired or now >= lane.not_before:
                return 0
            sooner(lane.not_before - now)
        return max(wait, 0.001) if wait is not None else None

    def _lane_for(self, partition_key: str) -> _Lane:
        lane = self._pk_lane.get(partition_key)
        if lane is None:
            lane = self._route_lanes[
                bisect.bisect_right(self._route_starts, self._hash(partition_key)) - 1
            ]
            self._pk_lane[partition_key] = lane
        return lane

    def _hash(self, partition_key: str) -> int:
        value = self._pk_hash.get(partition_key)
        if value is None:
            if len(self._pk_hash) > 100_000:
                self._pk_hash.clear()
            value = self._pk_hash[partition_key] = partition_key_hash(partition_key)
        return value

    def _lane_for_hash(self, hash_key: int) -> _Lane:
        return self._route_lanes[bisect.bisect_right(self._route_starts, hash_key) - 1]

    def _route(self, records: list[_UserRecord]) -> None:
        if len(self._route_lanes) == 1:
            lane = self._route_lanes[0]
            lane.records.extend(records)
            lane.records_bytes += sum(rec[3] for rec in records)
            return
        if len(self._pk_lane) > 100_000:
            self._pk_lane.clear()
        lane_for = self._lane_for
        for rec in records:
            lane = lane_for(rec[0])
            lane.records.append(rec)
            lane.records_bytes += rec[3]

    def _set_lanes(self, shards: list[tuple[str, int, int]] | None) -> list[_Lane]:
        """Install a new shard map; returns the lanes it retired. Sender thread (or __init__)."""
        with self._lock:
            old = self._lanes
            if shards:
                new = {sid: old.get(sid) or _Lane(sid, start, end) for sid, start, end in shards}
            else:
                new = {None: old.get(None) or _Lane(None, 0, HASH_KEY_SPACE - 1)}
            retired = [lane for key, lane in old.items() if key not in new]
            for lane in retired:
                lane.retired = True
            self._lanes = {**new, **{lane.shard_id: lane for lane in retired}}
            ordered = sorted(new.values(), key=lambda lane: lane.start)
            # The first lane takes everything below its start too, so routing never misses.
            self._route_starts = [0] + [lane.start for lane in ordered[1:]]
            self._route_lanes = ordered
            self._pk_lane = {}
        return retired

    def _refresh_shard_map(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._refresh_not_before = now + 1.0
            self._next_refresh = now + self._refresh_every
        try:
            shards = self._list_open_shards()
        except Exception as exc:
            log.warning(
                "ListShards on %s failed, keeping the old shard map: %s", self.stream_name, exc
            )
            with self._lock:
                self._map_stale = True
            return
        with self._lock:
            self._map_stale = False
            self._counts["shard_map_refreshes"] += 1
            current = sorted((lane.shard_id, lane.start, lane.end) for lane in self._route_lanes)
        self._m_refreshes.inc()
        if sorted(shards) != current:
            log.info("stream %s: routing to %d open shards", self.stream_name, len(shards))
            self._set_lanes(shards)

    def _list_open_shards(self) -> list[tuple[str, int, int]]:
        shards: list[tuple[str, int, int]] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            page = self._client.list_shards(**kwargs)
            for shard in page.get("Shards", []):
                if "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
                    continue  # closed by a split or merge; its children take the writes
                hash_range = shard["HashKeyRange"]
                shards.append(
                    (
                        shard["ShardId"],
                        int(hash_range["StartingHashKey"]),
                        int(hash_range["EndingHashKey"]),
                    )
                )
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def _collect_retired(self) -> None:
        """Move what waits in retired (closed-shard) lanes to the lanes of the new map."""
        with self._lock:
            idle = [lane for lane in self._lanes.values() if lane.retired and not lane.busy]
            if not idle:
                return
            retries: list[_Entry] = []
            for lane in idle:
                del self._lanes[lane.shard_id]
                retries += lane.retries
                lane.retries = []
            for entry in retries:
                self._lane_for_hash(entry.hash_key).retries.append(entry)
        for lane in idle:
            records = list(lane.records)
            lane.records.clear()
            lane.records_bytes = 0
            self._route(records)

    def _dispatch(self) -> None:
        now = time.monotonic()
        ready: list[tuple[_Lane, list[_Entry]]] = []
        with self._lock:
            for lane in self._lanes.values():
                if lane.busy or lane.retired or now < lane.not_before:
                    continue
                if not (lane.records or lane.retries):
                    continue
                lane.busy = True
                ready.append((lane, lane.retries))
                lane.retries = []
        for lane, retries in ready:
            entries, leftover = self._build_call(lane, retries)
            if leftover or not entries:
                with self._lock:
                    lane.retries[:0] = leftover
                    if not entries:
                        lane.busy = False
            if entries:
                self._executor.submit(self._send, lane, entries)

    def _build_call(self, lane: _Lane, retries: list[_Entry]) -> tuple[list[_Entry], list[_Entry]]:
        entries: list[_Entry] = []
        leftover: list[_Entry] = []
        total = 0
        for entry in retries:
            if len(entries) < MAX_CALL_RECORDS and total + entry.size <= MAX_CALL_BYTES:
                entries.append(entry)
                total += entry.size
            else:
                leftover.append(entry)
        aggregate = self._aggregate and lane.shard_id is not None
        while lane.records and len(entries) < MAX_CALL_RECORDS:
            entry = self._take_entry(lane, MAX_CALL_BYTES - total, aggregate)
            if entry is None:
                break
            entries.append(entry)
            total += entry.size
        return entries, leftover

    def _take_entry(self, lane: _Lane, room: int, aggregate: bool) -> _Entry | None:
        """Pop the next Kinesis record's worth of user records from ``lane`` (sender thread)."""
        records = lane.records
        first = records[0]
        if first[3] > room:
            return None
        if aggregate:
            entry = self._take_aggregate(lane, min(self._agg_max, room))
            if entry is not None:
                return entry
        records.popleft()
        lane.records_bytes -= first[3]
        # One record alone goes as itself: no aggregation overhead, and consumers that do not
        # deaggregate can read it too.
        return _Entry(first[2], first[0], None, self._hash(first[0]), first[3], [first])

    def _take_aggregate(self, lane: _Lane, limit: int) -> _Entry | None:
        """Pack the lane's leading records into one aggregated record of at most ``limit`` bytes
        (data plus the outer partition key); None if fewer than two records fit.

        The hottest loop of the producer, so the protobuf encoding of ``kpl.encode_aggregated`` is
        inlined here: same bytes, no per-record function calls.
        """
        records = lane.records
        first = records[0]
        varints = VARINTS
        table_size = VARINT_TABLE_SIZE
        size = OVERHEAD + len(first[1])
        keys: dict[str, int] = {}
        key_parts: list[bytes] = []
        record_parts: list[bytes] = []
        taken: list[_UserRecord] = []
        taken_bytes = 0
        for rec in records:
            key = rec[0]
            data = rec[2]
            index = keys.get(key)
            key_part = b""
            if index is None:
                index = len(keys)
                key_bytes = rec[1]
                key_len = len(key_bytes)
                key_varint = varints[key_len] if key_len < table_size else encode_varint(key_len)
                key_part = b"\x0a" + key_varint + key_bytes
            data_len = len(data)
            index_varint = varints[index] if index < table_size else encode_varint(index)
            len_varint = varints[data_len] if data_len < table_size else encode_varint(data_len)
            inner = 2 + len(index_varint) + len(len_varint) + data_len
            inner_varint = varints[inner] if inner < table_size else encode_varint(inner)
            cost = len(key_part) + 1 + len(inner_varint) + inner
            if size + cost > limit:
                break
            size += cost
            if key_part:
                keys[key] = index
                key_parts.append(key_part)
            record_parts += (
                b"\x1a",
                inner_varint,
                b"\x08",
                index_varint,
                b"\x1a",
                len_varint,
                data,
            )
            taken.append(rec)
            taken_bytes += rec[3]
        if len(taken) < 2:
            return None
        for _ in range(len(taken)):
            records.popleft()
        lane.records_bytes -= taken_bytes
        body = b"".join(key_parts + record_parts)
        data = seal(body)
        hash_key = self._hash(first[0])
        return _Entry(data, first[0], hash_key, hash_key, len(data) + len(first[1]), taken)

    # --- Executor threads -----------------------------------------------------------------------
    def _send(self, lane: _Lane, entries: list[_Entry]) -> None:
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

    def _send_call(self, lane: _Lane, entries: list[_Entry]) -> None:
        acked: list[tuple[_Entry, PutResult]] = []
        failed: list[tuple[_Entry, str, str]] = []
        fatal: list[tuple[_Entry, str, str]] = []
        call_error: str | None = None
        call_throttled = False
        stale = False
        started = time.monotonic()
        try:
            response = self._client.put_records(
                StreamName=self.stream_name, Records=[entry.request for entry in entries]
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "ClientError")
            message = str(error.get("Message") or exc)
            call_error = code
            call_throttled = code in _THROTTLE_CODES
            stale = code in _STALE_MAP_CODES
            target = fatal if code in _FATAL_CODES else failed
            target += [(entry, code, message) for entry in entries]
        except ParamValidationError as exc:
            call_error = "ParamValidationError"
            fatal += [(entry, call_error, str(exc)) for entry in entries]
        except (BotoCoreError, OSError) as exc:
            call_error = type(exc).__name__
            failed += [(entry, call_error, str(exc)) for entry in entries]
            stale = True
        else:
            results = response.get("Records") or []
            if len(results) != len(entries):
                call_error = "MalformedResponse"
                message = f"{len(results)} results for {len(entries)} records"
                failed += [(entry, call_error, message) for entry in entries]
            else:
                for entry, result in zip(entries, results, strict=True):
                    code = result.get("ErrorCode")
                    if code:
                        target = fatal if code in _FATAL_CODES else failed
                        target.append((entry, code, result.get("ErrorMessage", "")))
                    else:
                        shard_id = result["ShardId"]
                        if lane.shard_id is not None and shard_id != lane.shard_id:
                            stale = True
                        acked.append((entry, PutResult(shard_id, result["SequenceNumber"])))
        self._m_call_seconds.observe(time.monotonic() - started)
        if call_error:
            log.log(
                logging.DEBUG if call_throttled else logging.WARNING,
                "PutRecords on %s failed (%s); %d entries will be retried",
                self.stream_name,
                call_error,
                len(failed),
            )

        retry: list[_Entry] = []
        gave_up: list[tuple[_Entry, PutFailed]] = []
        for entry, code, message in failed:
            entry.attempts += 1
            entry.last_error = f"{code}: {message}"
            if entry.attempts > self._max_retries:
                gave_up.append(
                    (
                        entry,
                        PutFailed(
                            f"record not acknowledged by Kinesis stream {self.stream_name} after "
                            f"{entry.attempts} attempts (last error {entry.last_error})",
                            code,
                            entry.attempts,
                        ),
                    )
                )
            else:
                retry.append(entry)
        for entry, code, message in fatal:
            entry.attempts += 1
            gave_up.append(
                (
                    entry,
                    PutFailed(
                        f"Kinesis stream {self.stream_name} rejected the record: {code}: {message}",
                        code,
                        entry.attempts,
                    ),
                )
            )

        done: list[_UserRecord] = []
        aggregated = plain = 0
        for entry, result in acked:
            _resolve(entry.records, result, None)
            done += entry.records
            if entry.aggregated:
                aggregated += 1
            else:
                plain += 1
        acked_records = len(done)
        for entry, error in gave_up:
            _resolve(entry.records, None, error)
            done += entry.records
        throttled_entries = (
            0 if call_error else sum(1 for _, code, _ in failed if code in _THROTTLE_CODES)
        )

        with self._lock:
            lane.busy = False
            if retry:
                lane.retries.extend(retry)
                attempt = max(entry.attempts for entry in retry)
                lane.not_before = time.monotonic() + self._backoff(attempt)
            if stale:
                self._map_stale = True
            counts = self._counts
            counts["put_records_calls"] += 1
            counts["kinesis_records_put"] += aggregated + plain
            counts["aggregated_records_put"] += aggregated
            counts["retried_entries"] += len(retry)
            if call_error:
                counts["put_records_call_errors"] += 1
                counts["throttled_calls"] += call_throttled
            elif failed or fatal:
                counts["put_records_partial_failures"] += 1
            counts["throttled_entries"] += throttled_entries
            self._wake.notify()
        self._finish(done, failed=len(done) - acked_records)

        outcome = "error" if call_error else ("partial" if failed or fatal else "ok")
        self._m_calls[outcome].inc()
        if aggregated:
            self._m_kinesis[True].inc(aggregated)
        if plain:
            self._m_kinesis[False].inc(plain)
        if retry:
            self._m_retried.inc(len(retry))
        if call_throttled:
            self._m_throttled_call.inc()
        if throttled_entries:
            self._m_throttled_entry.inc(throttled_entries)

    def _finish(self, records: list[_UserRecord], *, failed: int) -> None:
        """Release resolved records' bytes; wake put() waiters and flush()."""
        if not records:
            return
        size = sum(rec[3] for rec in records)
        with self._lock:
            self._in_flight_bytes -= size
            self._outstanding -= len(records)
            self._counts["records_acknowledged"] += len(records) - failed
            self._counts["records_failed"] += failed
            if self._space_waiters:
                self._space.notify_all()
            if not self._outstanding:
                self._idle.notify_all()
            in_flight = self._in_flight_bytes
        self._m_in_flight.set(in_flight)
        if len(records) - failed:
            self._m_acked.inc(len(records) - failed)
        if failed:
            self._m_failed.inc(failed)

    def _backoff(self, attempt: int) -> float:
        """The shared policy's delay before retry ``attempt`` (1 for the first)."""
        return backoff_delay(
            attempt - 1, base=self._base_backoff, cap=self._max_backoff, rng=self._rng
        )

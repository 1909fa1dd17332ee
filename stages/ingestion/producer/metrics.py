"""The producer's counters: Prometheus metrics (one set per process, one label value per
stream), counted by one method per event. ``KinesisProducer.stats()`` reads its counts back from
them (:class:`stages.common.counters.CounterReadings`), so /metrics and ``stats()`` never
disagree on what happened.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stages.common.counters import CounterReadings
from stages.ingestion.producer.outcomes import CallOutcome

_RECORDS = Counter("kinesis_producer_records_total", "User records accepted by put()", ["stream"])
_BYTES = Counter(
    "kinesis_producer_bytes_total", "User record bytes (data + key) accepted", ["stream"]
)
_ACKED = Counter(
    "kinesis_producer_records_acknowledged_total",
    "User records acknowledged by Kinesis",
    ["stream"],
)
_KINESIS_RECORDS = Counter(
    "kinesis_producer_kinesis_records_total",
    "Kinesis records acknowledged (an aggregated record carries many user records)",
    ["stream", "aggregated"],
)
_CALLS = Counter(
    "kinesis_producer_put_records_calls_total",
    "PutRecords calls by outcome (ok, partial, error)",
    ["stream", "outcome"],
)
_CALL_SECONDS = Histogram(
    "kinesis_producer_put_records_seconds",
    "PutRecords call latency",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_RETRIED = Counter(
    "kinesis_producer_retried_entries_total",
    "Kinesis entries scheduled for another attempt",
    ["stream"],
)
_THROTTLED = Counter(
    "kinesis_producer_throttled_total",
    "Throttling answers: whole calls (scope=call) and single entries (scope=entry)",
    ["stream", "scope"],
)
_FAILED = Counter(
    "kinesis_producer_failed_records_total",
    "User records whose put failed for good (retries exhausted, fatal error or close)",
    ["stream"],
)
_OVERSIZE = Counter(
    "kinesis_producer_rejected_oversize_total",
    "Records rejected for exceeding the 1 MiB Kinesis record limit",
    ["stream"],
)
_BP_WAITS = Counter(
    "kinesis_producer_backpressure_waits_total",
    "put() calls that had to wait for in-flight room",
    ["stream"],
)
_BP_REJECTIONS = Counter(
    "kinesis_producer_backpressure_rejections_total",
    "put() calls that gave up waiting and raised ProducerFull",
    ["stream"],
)
_IN_FLIGHT = Gauge(
    "kinesis_producer_in_flight_bytes",
    "User record bytes buffered or in flight",
    ["stream"],
)
_MAP_REFRESHES = Counter(
    "kinesis_producer_shard_map_refreshes_total", "ListShards refreshes", ["stream"]
)


class ProducerMetrics:
    """The counters of one producer (one stream)."""

    def __init__(self, stream: str) -> None:
        self._records = _RECORDS.labels(stream=stream)
        self._bytes = _BYTES.labels(stream=stream)
        self._acked = _ACKED.labels(stream=stream)
        self._kinesis_aggregated = _KINESIS_RECORDS.labels(stream=stream, aggregated="true")
        self._kinesis_plain = _KINESIS_RECORDS.labels(stream=stream, aggregated="false")
        self._calls = {
            o: _CALLS.labels(stream=stream, outcome=o) for o in ("ok", "partial", "error")
        }
        self._call_seconds = _CALL_SECONDS.labels(stream=stream)
        self._retried = _RETRIED.labels(stream=stream)
        self._throttled_call = _THROTTLED.labels(stream=stream, scope="call")
        self._throttled_entry = _THROTTLED.labels(stream=stream, scope="entry")
        self._failed = _FAILED.labels(stream=stream)
        self._oversize = _OVERSIZE.labels(stream=stream)
        self._bp_waits = _BP_WAITS.labels(stream=stream)
        self._bp_rejections = _BP_REJECTIONS.labels(stream=stream)
        self._in_flight = _IN_FLIGHT.labels(stream=stream)
        self._refreshes = _MAP_REFRESHES.labels(stream=stream)
        # The fields of ProducerStats, each from the counters that make it up.
        self._readings = CounterReadings(
            {
                "records_put": [self._records],
                "bytes_put": [self._bytes],
                "records_acknowledged": [self._acked],
                "records_failed": [self._failed],
                "kinesis_records_put": [self._kinesis_aggregated, self._kinesis_plain],
                "aggregated_records_put": [self._kinesis_aggregated],
                "put_records_calls": list(self._calls.values()),
                "put_records_call_errors": [self._calls["error"]],
                "put_records_partial_failures": [self._calls["partial"]],
                "retried_entries": [self._retried],
                "throttled_calls": [self._throttled_call],
                "throttled_entries": [self._throttled_entry],
                "rejected_oversize": [self._oversize],
                "backpressure_waits": [self._bp_waits],
                "backpressure_rejections": [self._bp_rejections],
                "shard_map_refreshes": [self._refreshes],
            }
        )

    def snapshot(self) -> dict[str, int]:
        """This producer's counts (the stream's counters' increase since it was made)."""
        return self._readings.snapshot()

    def admitted(self, records: int, size: int) -> None:
        self._records.inc(records)
        self._bytes.inc(size)

    def rejected_oversize(self) -> None:
        self._oversize.inc()

    def backpressure_wait(self) -> None:
        self._bp_waits.inc()

    def backpressure_rejection(self) -> None:
        self._bp_rejections.inc()

    def shard_map_refreshed(self) -> None:
        self._refreshes.inc()

    def call_seconds(self, seconds: float) -> None:
        self._call_seconds.observe(seconds)

    def call_done(self, outcome: CallOutcome, *, retried: int) -> None:
        """One PutRecords call's answer, once its entries are resolved or re-queued."""
        aggregated, plain = outcome.acked_kinesis_records()
        throttled_entries = outcome.throttled_entries()
        result = outcome.result()
        self._calls[result].inc()
        if aggregated:
            self._kinesis_aggregated.inc(aggregated)
        if plain:
            self._kinesis_plain.inc(plain)
        if retried:
            self._retried.inc(retried)
        if outcome.call_throttled:
            self._throttled_call.inc()
        if throttled_entries:
            self._throttled_entry.inc(throttled_entries)

    def finished(self, acknowledged: int, failed: int) -> None:
        """User records resolved for good: acknowledged by Kinesis, or failed."""
        if acknowledged:
            self._acked.inc(acknowledged)
        if failed:
            self._failed.inc(failed)

    def in_flight_bytes(self, size: int) -> None:
        self._in_flight.set(size)

"""The consumer's Prometheus metrics (served on /metrics of its health port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS_IN = Counter(
    "consumer_records_in_total", "User records read from Kinesis (after deaggregation)", ["stream"]
)
BYTES_IN = Counter("consumer_bytes_in_total", "Bytes of user records read", ["stream"])
KINESIS_RECORDS_IN = Counter(
    "consumer_kinesis_records_in_total", "Kinesis records read (aggregated or not)", ["stream"]
)
RECORDS_OUT = Counter(
    "consumer_records_out_total", "Records written to S3 in lake objects", ["stream"]
)
BYTES_OUT = Counter("consumer_bytes_out_total", "Bytes of objects written to S3", ["stream"])
OBJECTS_OUT = Counter("consumer_objects_written_total", "Objects written to S3", ["stream"])
FLUSHES = Counter("consumer_flushes_total", "Shard flushes by trigger", ["stream", "reason"])
DEAD_LETTERS = Counter(
    "consumer_dead_letters_total", "Records written to the dead-letter prefix", ["stream"]
)
DUPLICATES_DROPPED = Counter(
    "consumer_duplicates_dropped_total",
    "Records not written because their event_id was already in the shard's window",
    ["stream"],
)
ARRIVAL_FALLBACKS = Counter(
    "consumer_event_time_fallbacks_total",
    "Records partitioned by arrival time because their timestamp was missing or unusable",
    ["stream"],
)
RECORD_ERRORS = Counter(
    "consumer_record_errors_total",
    "User records dead-lettered because processing them raised an unexpected exception",
    ["stream", "error"],
)
CORRUPT_AGGREGATES = Counter(
    "consumer_corrupt_aggregates_total",
    "Kinesis records with the KPL magic that are not readable aggregates (dead-lettered whole)",
    ["stream"],
)
WORKER_RESTARTS = Counter(
    "consumer_worker_restarts_total",
    "Shard workers that ended with an unexpected error (the shard is started again)",
    ["stream", "shard"],
)
RETRIES = Counter(
    "consumer_retries_total", "Retried AWS calls by operation and cause", ["operation", "cause"]
)
EXPIRED_ITERATORS = Counter(
    "consumer_expired_iterators_total", "Shard iterators that expired and were renewed", ["stream"]
)
THROTTLES = Counter("consumer_throttles_total", "GetRecords calls throttled by Kinesis", ["stream"])
LEASES_TAKEN = Counter("consumer_leases_taken_total", "Leases acquired", ["how"])
LEASES_LOST = Counter("consumer_leases_lost_total", "Leases lost to another worker")
MILLIS_BEHIND = Gauge(
    "consumer_millis_behind_latest",
    "MillisBehindLatest of the last GetRecords",
    ["stream", "shard"],
)
OLDEST_UNFLUSHED_AGE = Gauge(
    "consumer_oldest_unflushed_record_age_seconds", "Age of the oldest buffered record"
)
OPEN_PARTITIONS = Gauge("consumer_open_partitions", "Partitions with buffered records")
BUFFERED_RECORDS = Gauge("consumer_buffered_records", "Records buffered, not yet in S3")
OWNED_SHARDS = Gauge("consumer_owned_shards", "Shards this worker holds a lease on")

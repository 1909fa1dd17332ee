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

The modules, along those seams: :mod:`.shard_map` (routing), :mod:`.batching` (calls and KPL
aggregation; the aggregate format, and why it is encoded by hand, is :mod:`stages.common.kpl`),
:mod:`.outcomes` (what a PutRecords answer means for each entry), :mod:`.sender` (the
``KinesisProducer`` itself: ``put()`` and the sender thread), :mod:`.metrics`, :mod:`.results`
(futures, batches, stats) and :mod:`.errors`.
"""

from stages.ingestion.producer.batching import (
    DEFAULT_AGGREGATION_MAX_BYTES,
    MAX_CALL_BYTES,
    MAX_CALL_RECORDS,
    MAX_PARTITION_KEY_CHARS,
    MAX_RECORD_BYTES,
)
from stages.ingestion.producer.errors import (
    BatchPutError,
    ProducerClosed,
    ProducerError,
    ProducerFull,
    PutFailed,
    PutResult,
    RecordTooLarge,
)
from stages.ingestion.producer.results import Item, ProducerStats, PutBatch
from stages.ingestion.producer.sender import KinesisProducer
from stages.ingestion.producer.shard_map import HASH_KEY_SPACE, partition_key_hash

__all__ = [
    "DEFAULT_AGGREGATION_MAX_BYTES",
    "HASH_KEY_SPACE",
    "MAX_CALL_BYTES",
    "MAX_CALL_RECORDS",
    "MAX_PARTITION_KEY_CHARS",
    "MAX_RECORD_BYTES",
    "BatchPutError",
    "Item",
    "KinesisProducer",
    "ProducerClosed",
    "ProducerError",
    "ProducerFull",
    "ProducerStats",
    "PutBatch",
    "PutFailed",
    "PutResult",
    "RecordTooLarge",
    "partition_key_hash",
]

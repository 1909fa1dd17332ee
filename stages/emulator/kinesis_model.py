"""Corrections to moto's Kinesis model, so the embedded emulator behaves like Kinesis where our
guarantees depend on it, and keeps no record in memory.

- ``Shard.put_record`` is documented by moto as not safe for concurrency: two threads of the
  threaded server can draw the same sequence number and one record silently replaces the other.
  Writes are serialised.
- Finding the last sequence number built a list of every key (O(n) per put), and GetRecords
  scanned the shard from its first record on every call; both made the emulator quadratic in the
  number of records. Sequence numbers in moto are consecutive integers, so both become lookups.
- GetRecords returned everything up to ``Limit`` however large; Kinesis stops at 10 MiB per call,
  and consumers size their memory by that.
- After ``SplitShard`` moto re-puts the parent's records and keeps routing new records by hash
  range over *all* shards, so they land in the closed parent again. Real Kinesis keeps the
  parent's records in the parent and routes new records to the open children only.
- moto kept every record's data in memory, base64-encoded. Records now go to a shard's record
  log on disk (``kinesis_log``): data and a fixed-size index entry per record.
- moto never expired records. Records older than the stream's retention period (24 h unless
  changed) are now dropped as Kinesis drops them, and a file is freed once all its records are.
  Sequence numbers keep counting up across it, as in Kinesis.
- moto added two CloudWatch datapoints per PutRecord(s) call and kept them all; the emulator
  keeps the newest ``MAX_CLOUDWATCH_DATUMS``.
- PutRecords decoded each record's base64 twice; it now decodes it once, with pybase64
  (``stages.common.base64_codec``: the same bytes, several times faster).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from moto.core.utils import unix_time, utcnow
from moto.kinesis import models

from stages.common import base64_codec
from stages.emulator import files, kinesis_log

_write_lock = threading.RLock()
_MAX_GET_BYTES = 10 * 1024 * 1024
# Where the record logs go (None: the system's temporary directory); set by install().
_data_directory: Path | None = None


def _log_of(shard: models.Shard) -> kinesis_log.RecordLog:
    records = shard.records
    if not isinstance(records, kinesis_log.RecordLog):
        # A shard moto made with a plain dict (MergeShards, SplitShard); nothing in it yet.
        assert not records, "records written around the record log"
        records = shard.records = kinesis_log.RecordLog(_data_directory, files.SEGMENT_BYTES)
    return records


def _shard_init(self: models.Shard, *args: Any, **kwargs: Any) -> None:
    _original_shard_init(self, *args, **kwargs)
    self.records = kinesis_log.RecordLog(_data_directory, files.SEGMENT_BYTES)  # type: ignore[assignment]


_original_shard_init = models.Shard.__init__


# The newest sequence number ever given out is the log's, kept apart from the records: once the
# oldest have expired (or all of them), numbering goes on from there, never from those left.
def _max_sequence_number(self: models.Shard) -> int:
    with _write_lock:
        return _log_of(self).last


def _min_sequence_number(self: models.Shard) -> int:
    with _write_lock:
        log = _log_of(self)
        return log.first_live if log else 0


def _put_record(self: models.Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    return _put_raw(self, partition_key, base64_codec.decode(data), explicit_hash_key)


def _put_raw(self: models.Shard, partition_key: str, raw: bytes, explicit_hash_key: str) -> str:
    with _write_lock:
        sequence_number = _log_of(self).append(
            partition_key, raw, explicit_hash_key or None, unix_time(utcnow())
        )
    return str(sequence_number)


def expire_records(shard: models.Shard, retention_seconds: float, now: float) -> int:
    """Drop the records older than the retention period; returns how many."""
    with _write_lock:
        return _log_of(shard).expire(now - retention_seconds)


_original_stream_put = models.Stream.put_record


def _stream_put_record(
    self: models.Stream, partition_key: str, explicit_hash_key: str, data: str
) -> tuple[str, str]:
    sequence_number, shard_id = _original_stream_put(self, partition_key, explicit_hash_key, data)
    _expire_stream(self)
    return sequence_number, shard_id


def _expire_stream(stream: models.Stream) -> None:
    # One look at each shard's oldest record; every shard of the stream, so that a parent
    # closed by a split, which nobody writes to any more, expires too.
    now = time.time()
    for shard in list(stream.shards.values()):
        expire_records(shard, stream.retention_period_hours * 3600, now)


# moto records two CloudWatch datapoints per PutRecord(s) call and never drops one, so they grow
# with the traffic for as long as the emulator runs. The emulator keeps the newest. Nothing here
# reads them; 2,000 keep the last thousand calls for whoever looks.
MAX_CLOUDWATCH_DATUMS = 2_000
_original_send_metrics = models.KinesisBackend._send_stream_metrics


def _send_stream_metrics(
    self: models.KinesisBackend, stream_name: str, incoming_bytes: int, incoming_records: int
) -> None:
    _original_send_metrics(self, stream_name, incoming_bytes, incoming_records)
    data = models.cloudwatch_backends[self.account_id][self.region_name].metric_data
    # Trimmed in steps of a quarter, so the cost of the list copy is spread over many calls.
    if len(data) > MAX_CLOUDWATCH_DATUMS * 5 // 4:
        del data[: len(data) - MAX_CLOUDWATCH_DATUMS]


_original_put_records = models.KinesisBackend.put_records


def _put_records(
    self: models.KinesisBackend, stream_arn: str, stream_name: str, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """moto's PutRecords, decoding each record's base64 once (moto decoded it twice, one of the
    emulator's largest costs under load) and expiring once per call, not once per record."""
    stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
    if stream.lambda_event_source_mappings:
        return _original_put_records(self, stream_arn, stream_name, records)
    if len(records) > 500:
        raise models.TooManyRecords
    raws = [base64_codec.decode(record.get("Data", "")) for record in records]
    sizes = [
        len(raw) + len(record.get("PartitionKey", ""))
        for raw, record in zip(raws, records, strict=True)
    ]
    if sum(sizes) > 5 * 1024 * 1024:
        raise models.TotalRecordsSizeExceedsLimit
    over = next((index for index, size in enumerate(sizes) if size > 1024 * 1024), None)
    if over is not None:
        raise models.RecordSizeExceedsLimit(position=over + 1)
    results = []
    for raw, record in zip(raws, records, strict=True):
        partition_key = record.get("PartitionKey")
        explicit_hash_key = record.get("ExplicitHashKey")
        shard = stream.get_shard_for_key(partition_key, explicit_hash_key)
        sequence_number = _put_raw(shard, partition_key, raw, explicit_hash_key)
        results.append({"SequenceNumber": sequence_number, "ShardId": shard.shard_id})
    _expire_stream(stream)
    self._send_stream_metrics(
        stream.stream_name, incoming_bytes=sum(sizes), incoming_records=len(records)
    )
    return {"FailedRecordCount": 0, "Records": results}


def _get_records(
    self: models.Shard, last_sequence_id: str, limit: int | None
) -> tuple[list[kinesis_log.StoredRecord], int, int]:
    position = int(last_sequence_id)
    with _write_lock:
        log = _log_of(self).view()
    # Read outside the lock: a page of 10 MiB would hold up every PutRecords meanwhile.
    newest = log.last
    stop = newest if limit is None else min(newest, max(position, log.first_live - 1) + limit)
    results = log.read(position + 1, stop, _MAX_GET_BYTES)
    latest_at = log.created_at(newest) if results else 0.0
    millis_behind = 0
    if results:
        position = results[-1].sequence_number
        millis_behind = int((latest_at - results[-1].created_at) * 1000)
    return results, position, millis_behind


def _get_shard_for_key(
    self: models.Stream, partition_key: str, explicit_hash_key: str | None
) -> models.Shard | None:
    if explicit_hash_key:
        int_key = int(explicit_hash_key)
        if int_key >= 2**128:
            raise models.InvalidArgumentError("explicit_hash_key")
    else:
        int_key = int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        # Hash ranges are inclusive at both ends, as ListShards reports them.
        if shard.is_open and shard.starting_hash <= int_key <= shard.ending_hash:
            return shard
    return None


def _sequence_number_at(self: models.Shard, at_timestamp: float) -> int:
    """moto's rule (0 when nothing arrived before ``at_timestamp``, else the newest record that
    did) as a binary search over arrival times."""
    with _write_lock:
        log = _log_of(self)
        if not log or at_timestamp <= log.created_at(log.first_live):
            return 0
        found = log.last_before(at_timestamp)
        return 0 if found is None else found


_original_split = models.Stream.split_shard


def _split_shard(self: models.Stream, shard_to_split: str, new_starting_hash_key: str) -> None:
    with _write_lock:
        parent = self.shards.get(shard_to_split)
        kept: Any = parent.records if parent is not None else None
        if parent is not None:
            parent.records = {}
        try:
            _original_split(self, shard_to_split, new_starting_hash_key)
        finally:
            if parent is not None:
                parent.records = kept


def install(data_directory: Path | None) -> None:
    global _data_directory
    _data_directory = data_directory
    models.Shard.__init__ = _shard_init  # type: ignore[method-assign]
    models.Shard.put_record = _put_record
    models.Shard.get_max_sequence_number = _max_sequence_number
    models.Shard.get_min_sequence_number = _min_sequence_number
    models.Shard.get_records = _get_records
    models.Stream.get_shard_for_key = _get_shard_for_key
    models.Stream.split_shard = _split_shard
    models.Shard.get_sequence_number_at = _sequence_number_at
    models.Stream.put_record = _stream_put_record
    models.KinesisBackend.put_records = _put_records
    models.KinesisBackend._send_stream_metrics = _send_stream_metrics

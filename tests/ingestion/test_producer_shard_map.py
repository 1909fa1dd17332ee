"""Routing and call building of the producer, without Kinesis: the shard map sends each record
to the shard Kinesis would pick, and a call's entries stay within Kinesis' limits."""

from __future__ import annotations

from collections import Counter

from stages.common.kpl import deaggregate
from stages.ingestion.producer import HASH_KEY_SPACE, MAX_CALL_RECORDS, partition_key_hash
from stages.ingestion.producer.batching import build_call
from stages.ingestion.producer.shard_map import ShardMap

HALF = HASH_KEY_SPACE // 2
TWO_SHARDS = [
    ("shardId-000000000001", 0, HALF - 1),
    ("shardId-000000000002", HALF, HASH_KEY_SPACE - 1),
]


def _record(key: str, data: bytes = b'{"a":1}', index: int = 0) -> tuple:
    key_bytes = key.encode()
    return (key, key_bytes, data, len(data) + len(key_bytes), None, index)


def test_records_go_to_the_shard_whose_range_holds_their_key_hash() -> None:
    shard_map = ShardMap()
    shard_map.install(TWO_SHARDS)
    keys = [f"service-{i}" for i in range(200)]
    shard_map.route([_record(key) for key in keys])
    for shard_id, start, end in TWO_SHARDS:
        lane = shard_map.lanes[shard_id]
        assert all(start <= partition_key_hash(rec[0]) <= end for rec in lane.records)
    counts = Counter({sid: len(shard_map.lanes[sid].records) for sid, _, _ in TWO_SHARDS})
    assert sum(counts.values()) == 200 and min(counts.values()) > 50


def test_a_new_map_retires_closed_shards_and_keeps_the_open_ones() -> None:
    shard_map = ShardMap()
    assert shard_map.shards() == [] and list(shard_map.lanes) == [None]
    first = shard_map.install(TWO_SHARDS)
    assert [lane.shard_id for lane in first] == [None]
    del shard_map.lanes[None]  # what the producer does once a retired lane is empty
    kept = shard_map.lanes["shardId-000000000002"]
    children = [
        ("shardId-000000000003", 0, HALF // 2 - 1),
        ("shardId-000000000004", HALF // 2, HALF - 1),
        TWO_SHARDS[1],
    ]
    retired = shard_map.install(children)
    assert [lane.shard_id for lane in retired] == ["shardId-000000000001"]
    assert retired[0].retired
    assert shard_map.lanes["shardId-000000000002"] is kept
    assert shard_map.shards() == sorted(children, key=lambda shard: shard[1])
    assert shard_map.open_shard_count() == 3


def test_a_call_packs_a_shards_records_into_aggregates_that_deaggregate_to_them() -> None:
    shard_map = ShardMap()
    shard_map.install(TWO_SHARDS)
    records = [_record("svc", f'{{"n":{i}}}'.encode(), i) for i in range(1000)]
    shard_map.route(records)
    lane = shard_map.lane_for("svc")
    entries, leftover = build_call(
        lane, [], aggregate=True, aggregation_max_bytes=4096, hash_of=shard_map.hash
    )
    assert not leftover and not lane.records
    assert all(entry.aggregated for entry in entries)
    assert all(len(entry.request["Data"]) + 3 <= 4096 for entry in entries)
    assert all(
        entry.request["ExplicitHashKey"] == str(partition_key_hash("svc")) for entry in entries
    )
    users = [u for e in entries for u in deaggregate(e.request["Data"], e.request["PartitionKey"])]
    assert [u.data for u in users] == [rec[2] for rec in records]
    assert {u.partition_key for u in users} == {"svc"}


def test_without_aggregation_a_call_stops_at_500_entries() -> None:
    shard_map = ShardMap()
    shard_map.route([_record(f"k{i}", index=i) for i in range(MAX_CALL_RECORDS + 20)])
    lane = shard_map.lanes[None]
    entries, _ = build_call(
        lane, [], aggregate=True, aggregation_max_bytes=4096, hash_of=shard_map.hash
    )
    # No shard map: nothing is aggregated, every record is its own entry.
    assert len(entries) == MAX_CALL_RECORDS
    assert not any(entry.aggregated for entry in entries)
    assert len(lane.records) == 20

"""The shard-lease table's items: what the Kinesis consumer stores per shard, and how to read it.

The consumer writes the table (``stages/consumer/leases.py`` keeps the write contract: conditional
claims, owner-guarded checkpoints); the dashboard reads it to show each shard's owner and
checkpoint. Both read an item through ``lease_from_item``, so the item's shape is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Mark:
    sequence: str  # the last Kinesis sequence number of a checkpointed flush
    records: int  # records with an event_id read in (previous mark, sequence]


@dataclass(frozen=True, slots=True)
class WindowState:
    """What the lease stores: the window starts after ``base`` and ends at the last mark."""

    base: str
    marks: tuple[Mark, ...] = ()


TRIM_HORIZON = "TRIM_HORIZON"
SHARD_END = "SHARD_END"


@dataclass(frozen=True)
class Lease:
    stream: str
    shard_id: str
    checkpoint: str = TRIM_HORIZON
    owner: str | None = None
    counter: int = 0
    parents: tuple[str, ...] = ()
    pending_end: str | None = None
    # How the pending range was encoded and deduplicated; None: recorded by an older consumer.
    pending_compression: str | None = None
    pending_window_records: int | None = None
    heartbeat_ms: int = 0
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    window: WindowState | None = None  # None: written by a consumer without the dedup window

    @property
    def key(self) -> str:
        return lease_key(self.stream, self.shard_id)

    @property
    def finished(self) -> bool:
        return self.checkpoint == SHARD_END


def lease_key(stream: str, shard_id: str) -> str:
    return f"{stream}:{shard_id}"


def lease_from_item(item: dict[str, Any]) -> Lease:
    def s(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    def n(name: str) -> int | None:
        return int(item[name]["N"]) if name in item else None

    return Lease(
        stream=item["stream"]["S"],
        shard_id=item["shard_id"]["S"],
        checkpoint=s("checkpoint") or TRIM_HORIZON,
        owner=s("lease_owner"),
        counter=n("lease_counter") or 0,
        parents=tuple(p["S"] for p in item.get("parent_shard_ids", {}).get("L", [])),
        pending_end=s("pending_end"),
        pending_compression=s("pending_compression"),
        pending_window_records=n("pending_window_records"),
        heartbeat_ms=n("heartbeat_ms") or 0,
        started_at_ms=n("started_at_ms"),
        finished_at_ms=n("finished_at_ms"),
        window=window_from_item(item),
    )


def window_from_item(item: dict[str, Any]) -> WindowState | None:
    if "dedup_base" not in item:
        return None
    marks = tuple(
        Mark(entry["M"]["s"]["S"], int(entry["M"]["n"]["N"]))
        for entry in item.get("dedup_marks", {}).get("L", [])
    )
    return WindowState(item["dedup_base"]["S"], marks)


def read_leases(dynamodb: Any, table: str) -> list[Lease]:
    """Every lease of the table, read consistently (a scan, page by page)."""
    leases = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        leases.extend(lease_from_item(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return leases
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True)
class ShardLeaseTable:
    """Read-only access to the lease table, for whoever shows the consumer's progress."""

    dynamodb: Any
    table: str

    def list(self) -> list[Lease]:
        return read_leases(self.dynamodb, self.table)

"""Shard leases and checkpoints (KCL-style), in DynamoDB or in memory for unit tests.

One item per shard, keyed ``<stream>:<shard>``. The contract every store keeps:

- ``take`` is a compare-and-set on (owner, counter): it succeeds only if nobody changed the lease
  since the caller looked, so two workers can never both believe they took it.
- Every write a holder makes (``renew``, ``set_pending``, ``checkpoint``, ``release``) is guarded
  by ``owner = me``; a worker that lost its lease gets ``LeaseLost`` instead of overwriting the
  new owner's progress.
- ``set_pending(end, compression, window_records)`` records how a flush was cut *before* its
  objects are uploaded: where it ends, how its objects are encoded and the size of the duplicate
  window that chose its records. Whoever holds the lease next replays exactly the range
  (checkpoint, end] with that encoding and that window before reading on, whatever its own
  settings say, so the objects are rebuilt with the same keys and the same contents and nothing
  is duplicated by a different batching.
- ``checkpoint(seq, window)`` is written only after the objects are in S3 and clears the pending
  range; in the same write it stores the duplicate window's positions (see dedup.py), so the
  next holder rebuilds exactly the window the checkpoint was made with.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from botocore.exceptions import ClientError

from stages.common.shard_leases import (
    SHARD_END,
    TRIM_HORIZON,
    Lease,
    WindowState,
    lease_from_item,
    lease_key,
    read_leases,
)


class LeaseLost(Exception):
    def __init__(self, lease_key: str) -> None:
        super().__init__(f"lease {lease_key} is held by another worker")
        self.lease_key = lease_key


def _now_ms() -> int:
    return int(time.time() * 1000)


class LeaseStore(Protocol):
    def create_if_missing(self, stream: str, shard_id: str, parents: tuple[str, ...]) -> bool: ...
    def list(self) -> list[Lease]: ...
    def take(self, lease: Lease, owner: str) -> Lease | None: ...
    def renew(self, key: str, owner: str) -> None: ...
    def set_pending(
        self,
        key: str,
        owner: str,
        end_sequence: str,
        compression: str | None = None,
        window_records: int | None = None,
    ) -> None: ...
    def checkpoint(
        self, key: str, owner: str, sequence: str, window: WindowState | None = None
    ) -> None: ...
    def mark_started(self, key: str, owner: str) -> None: ...
    def release(self, key: str, owner: str) -> None: ...


@dataclass
class InMemoryLeaseStore:
    """The same contract as DynamoLeaseStore, for unit tests of the coordination logic."""

    leases: dict[str, Lease] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create_if_missing(self, stream: str, shard_id: str, parents: tuple[str, ...]) -> bool:
        with self.lock:
            key = lease_key(stream, shard_id)
            if key in self.leases:
                return False
            self.leases[key] = Lease(stream, shard_id, parents=parents)
            return True

    def list(self) -> list[Lease]:
        with self.lock:
            return list(self.leases.values())

    def take(self, lease: Lease, owner: str) -> Lease | None:
        with self.lock:
            current = self.leases.get(lease.key)
            if current is None or (current.owner, current.counter) != (lease.owner, lease.counter):
                return None
            taken = replace(
                current, owner=owner, counter=current.counter + 1, heartbeat_ms=_now_ms()
            )
            self.leases[lease.key] = taken
            return taken

    def _update_owned(
        self, key: str, owner: str, change: Callable[[Lease], dict[str, Any]]
    ) -> None:
        with self.lock:
            current = self.leases.get(key)
            if current is None or current.owner != owner:
                raise LeaseLost(key)
            self.leases[key] = replace(current, **change(current))

    def renew(self, key: str, owner: str) -> None:
        self._update_owned(
            key, owner, lambda lease: {"counter": lease.counter + 1, "heartbeat_ms": _now_ms()}
        )

    def set_pending(
        self,
        key: str,
        owner: str,
        end_sequence: str,
        compression: str | None = None,
        window_records: int | None = None,
    ) -> None:
        self._update_owned(
            key,
            owner,
            lambda lease: {
                "pending_end": end_sequence,
                "pending_compression": compression,
                "pending_window_records": window_records,
            },
        )

    def checkpoint(
        self, key: str, owner: str, sequence: str, window: WindowState | None = None
    ) -> None:
        def change(lease: Lease) -> dict[str, Any]:
            changes: dict[str, Any] = {
                "checkpoint": sequence,
                "pending_end": None,
                "pending_compression": None,
                "pending_window_records": None,
                "window": window,
            }
            if sequence == SHARD_END:
                changes["finished_at_ms"] = _now_ms()
            return changes

        self._update_owned(key, owner, change)

    def mark_started(self, key: str, owner: str) -> None:
        self._update_owned(
            key, owner, lambda lease: {"started_at_ms": lease.started_at_ms or _now_ms()}
        )

    def release(self, key: str, owner: str) -> None:
        self._update_owned(key, owner, lambda lease: {"owner": None, "counter": lease.counter + 1})


class DynamoLeaseStore:
    """Leases in a DynamoDB table with a string hash key ``lease_key``; conditional writes only."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.db = dynamodb
        self.table = table

    def create_if_missing(self, stream: str, shard_id: str, parents: tuple[str, ...]) -> bool:
        item: dict[str, Any] = {
            "lease_key": {"S": lease_key(stream, shard_id)},
            "stream": {"S": stream},
            "shard_id": {"S": shard_id},
            "checkpoint": {"S": TRIM_HORIZON},
            "lease_counter": {"N": "0"},
            "heartbeat_ms": {"N": "0"},
        }
        if parents:
            item["parent_shard_ids"] = {"L": [{"S": p} for p in parents]}
        try:
            self.db.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(lease_key)",
            )
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise

    def list(self) -> list[Lease]:
        return read_leases(self.db, self.table)

    def take(self, lease: Lease, owner: str) -> Lease | None:
        values: dict[str, Any] = {
            ":me": {"S": owner},
            ":one": {"N": "1"},
            ":expected": {"N": str(lease.counter)},
            ":now": {"N": str(_now_ms())},
        }
        condition = "lease_counter = :expected AND "
        if lease.owner is None:
            condition += "attribute_not_exists(lease_owner)"
        else:
            condition += "lease_owner = :previous"
            values[":previous"] = {"S": lease.owner}
        try:
            resp = self.db.update_item(
                TableName=self.table,
                Key={"lease_key": {"S": lease.key}},
                UpdateExpression=(
                    "SET lease_owner = :me, lease_counter = lease_counter + :one, "
                    "heartbeat_ms = :now"
                ),
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return lease_from_item(resp["Attributes"])

    def _update_owned(
        self,
        key: str,
        owner: str,
        expression: str,
        values: dict[str, Any] | None = None,
    ) -> None:
        try:
            self.db.update_item(
                TableName=self.table,
                Key={"lease_key": {"S": key}},
                UpdateExpression=expression,
                ConditionExpression="lease_owner = :me",
                ExpressionAttributeValues={":me": {"S": owner}, **(values or {})},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                raise LeaseLost(key) from exc
            raise

    def renew(self, key: str, owner: str) -> None:
        self._update_owned(
            key,
            owner,
            "SET lease_counter = lease_counter + :one, heartbeat_ms = :now",
            {":one": {"N": "1"}, ":now": {"N": str(_now_ms())}},
        )

    def set_pending(
        self,
        key: str,
        owner: str,
        end_sequence: str,
        compression: str | None = None,
        window_records: int | None = None,
    ) -> None:
        expression = "SET pending_end = :end"
        values: dict[str, Any] = {":end": {"S": end_sequence}}
        removed = []
        if compression is None:
            removed.append("pending_compression")
        else:
            expression += ", pending_compression = :compression"
            values[":compression"] = {"S": compression}
        if window_records is None:
            removed.append("pending_window_records")
        else:
            expression += ", pending_window_records = :window"
            values[":window"] = {"N": str(window_records)}
        if removed:
            expression += " REMOVE " + ", ".join(removed)
        self._update_owned(key, owner, expression, values)

    def checkpoint(
        self, key: str, owner: str, sequence: str, window: WindowState | None = None
    ) -> None:
        expression = "SET #cp = :seq"
        values: dict[str, Any] = {":seq": {"S": sequence}}
        removed = "pending_end, pending_compression, pending_window_records"
        if sequence == SHARD_END:
            expression += ", finished_at_ms = :now"
            values[":now"] = {"N": str(_now_ms())}
        if window is None:
            removed += ", dedup_base, dedup_marks"
        else:
            expression += ", dedup_base = :base, dedup_marks = :marks"
            values[":base"] = {"S": window.base}
            values[":marks"] = {
                "L": [
                    {"M": {"s": {"S": m.sequence}, "n": {"N": str(m.records)}}}
                    for m in window.marks
                ]
            }
        try:
            self.db.update_item(
                TableName=self.table,
                Key={"lease_key": {"S": key}},
                UpdateExpression=f"{expression} REMOVE {removed}",
                ConditionExpression="lease_owner = :me",
                ExpressionAttributeNames={"#cp": "checkpoint"},
                ExpressionAttributeValues={":me": {"S": owner}, **values},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                raise LeaseLost(key) from exc
            raise

    def mark_started(self, key: str, owner: str) -> None:
        self._update_owned(
            key,
            owner,
            "SET started_at_ms = if_not_exists(started_at_ms, :now)",
            {":now": {"N": str(_now_ms())}},
        )

    def release(self, key: str, owner: str) -> None:
        self._update_owned(
            key,
            owner,
            "REMOVE lease_owner SET lease_counter = lease_counter + :one",
            {":one": {"N": "1"}},
        )


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"

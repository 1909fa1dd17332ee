"""One named lease in a DynamoDB table: at most one holder at a time, with a fencing token.

The consumer's shard leases (``stages.consumer.leases``) for a single job instead of a shard:
one item per name, keyed ``lease_key``, written only with conditional updates.

- ``acquire`` takes the lease when nobody holds it or its holder let it expire (``expires_ms`` in
  the past), as a compare-and-set on the ``fence`` it read; every take adds one to ``fence``, so
  a holder's token is larger than every earlier holder's. A holder that acquires again while it
  still holds the lease just renews it and keeps its token.
- ``renew`` and ``release`` are guarded by ``owner = me AND fence = my token``: a holder that was
  replaced gets ``LeaseLost`` instead of extending the new holder's lease.
- ``held()`` is the holder's own view: the lease is treated as lost ``margin`` before it expires,
  so work guarded by it stops before anyone else can take it over. Whatever the holder writes
  should also carry the token (the ETL writes it into each Iceberg snapshot) so that a write made
  after a takeover can be recognised and refused.
- ``request`` lets another owner ask the holder to hand a live lease over (``wanted_by``), for
  whoever balances many leases between processes (detection's service leases): the holder
  finishes what it was doing, then releases; the lease never changes hands behind a holder's
  back. The request outlives the release (so the asking owner can be given the first turn) and
  is cleared by the next take.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


class LeaseLost(Exception):
    def __init__(self, name: str, detail: str = "held by another owner") -> None:
        super().__init__(f"lease {name!r}: {detail}")
        self.name = name


@dataclass(frozen=True)
class LeaseState:
    name: str
    owner: str | None
    fence: int
    expires_ms: int
    wanted_by: str | None = None  # another owner asked the holder to hand the lease over
    wanted_ms: int = 0  # when it asked

    def expired(self, now_ms: int) -> bool:
        return self.owner is None or self.expires_ms <= now_ms


def _now_ms() -> int:
    return int(time.time() * 1000)


def _state(item: dict[str, Any]) -> LeaseState:
    return LeaseState(
        name=item["lease_key"]["S"],
        owner=item["lease_owner"]["S"] if "lease_owner" in item else None,
        fence=int(item["fence"]["N"]),
        expires_ms=int(item["expires_ms"]["N"]),
        wanted_by=item["wanted_by"]["S"] if "wanted_by" in item else None,
        wanted_ms=int(item["wanted_ms"]["N"]) if "wanted_ms" in item else 0,
    )


def read_all(dynamodb: Any, table: str) -> list[LeaseState]:
    """Every lease of ``table``, read consistently (a scan, page by page)."""
    found: list[LeaseState] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        found.extend(_state(item) for item in page.get("Items", []) if "fence" in item)
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class NamedLease:
    """The lease ``name`` in ``table`` as seen by ``owner``."""

    def __init__(
        self, dynamodb: Any, table: str, name: str, owner: str, duration_seconds: float
    ) -> None:
        self.db = dynamodb
        self.table = table
        self.name = name
        self.owner = owner
        self.duration_ms = int(duration_seconds * 1000)
        self.fence: int | None = None  # the token while held
        self._valid_until = 0.0  # monotonic; our own conservative view of the expiry

    # --- reading --------------------------------------------------------------------------
    def read(self) -> LeaseState | None:
        item = self.db.get_item(
            TableName=self.table, Key={"lease_key": {"S": self.name}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return _state(item)

    def held(self, margin_seconds: float = 0.0) -> bool:
        return self.fence is not None and time.monotonic() + margin_seconds < self._valid_until

    def valid_for(self) -> float:
        """Seconds left before the lease runs out unrenewed, by the holder's own clock."""
        return max(0.0, self._valid_until - time.monotonic()) if self.fence is not None else 0.0

    # --- writing --------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take (or renew) the lease; True when this owner holds it afterwards."""
        if self.fence is not None:
            try:
                self.renew()
                return True
            except LeaseLost:
                pass
        current = self.read()
        now = _now_ms()
        started = time.monotonic()
        expires = now + self.duration_ms
        values: dict[str, Any] = {
            ":me": {"S": self.owner},
            ":expires": {"N": str(expires)},
            ":now": {"N": str(now)},
        }
        if current is None:
            condition = "attribute_not_exists(lease_key)"
            fence = 1
        else:
            if current.owner == self.owner and not current.expired(now):
                # Our own lease from before a restart of this owner id: take it with a new token.
                pass
            elif not current.expired(now):
                return False
            condition = (
                "fence = :seen AND (attribute_not_exists(lease_owner) OR expires_ms <= :now)"
            )
            if current.owner == self.owner:
                condition = "fence = :seen"
            values[":seen"] = {"N": str(current.fence)}
            fence = current.fence + 1
        values[":fence"] = {"N": str(fence)}
        try:
            self.db.update_item(
                TableName=self.table,
                Key={"lease_key": {"S": self.name}},
                UpdateExpression="SET lease_owner = :me, fence = :fence, expires_ms = :expires, "
                "taken_ms = :now REMOVE wanted_by, wanted_ms",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                self.fence = None
                return False
            raise
        self.fence = fence
        self._valid_until = started + self.duration_ms / 1000
        return True

    def renew(self) -> None:
        if self.fence is None:
            raise LeaseLost(self.name, "not held")
        started = time.monotonic()
        expires = _now_ms() + self.duration_ms
        try:
            self.db.update_item(
                TableName=self.table,
                Key={"lease_key": {"S": self.name}},
                UpdateExpression="SET expires_ms = :expires",
                ConditionExpression="lease_owner = :me AND fence = :fence",
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":fence": {"N": str(self.fence)},
                    ":expires": {"N": str(expires)},
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                self.fence = None
                raise LeaseLost(self.name) from exc
            raise
        self._valid_until = started + self.duration_ms / 1000

    def keep_renewed(self, stop: threading.Event) -> threading.Thread:
        """Renew the lease every third of its duration while it is held, until ``stop``: a
        long piece of work under the lease does not let it expire."""

        def renew_loop() -> None:
            while not stop.wait(self.duration_ms / 3000):
                if self.fence is None:
                    continue
                # Lost: the holder's own checks notice; an AWS error: the next round retries.
                with contextlib.suppress(Exception):
                    self.renew()

        thread = threading.Thread(target=renew_loop, name=f"lease-{self.name}", daemon=True)
        thread.start()
        return thread

    def request(self, seen: LeaseState) -> bool:
        """Ask the holder of ``seen`` to hand the lease over to this owner; False when the
        lease changed hands since it was read (nothing is written then)."""
        if seen.owner is None:
            return False
        try:
            self.db.update_item(
                TableName=self.table,
                Key={"lease_key": {"S": self.name}},
                UpdateExpression="SET wanted_by = :me, wanted_ms = :now",
                ConditionExpression="lease_owner = :holder AND fence = :fence",
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":now": {"N": str(_now_ms())},
                    ":holder": {"S": seen.owner},
                    ":fence": {"N": str(seen.fence)},
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def release(self) -> None:
        if self.fence is None:
            return
        fence, self.fence = self.fence, None
        try:
            self.db.update_item(
                TableName=self.table,
                Key={"lease_key": {"S": self.name}},
                UpdateExpression="REMOVE lease_owner SET expires_ms = :zero",
                ConditionExpression="lease_owner = :me AND fence = :fence",
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":fence": {"N": str(fence)},
                    ":zero": {"N": "0"},
                },
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

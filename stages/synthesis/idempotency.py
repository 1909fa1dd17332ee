"""Idempotency keys for ``POST /api/synthesize``.

Each synthesize call makes new records (new event ids), so a caller that retries after losing an
answer (a read timeout, a dropped connection) would otherwise put a second set of records into the
lake, which the consumer's duplicate window cannot recognise. With an ``Idempotency-Key`` header,
synthesis remembers what the key's attempts did:

- how many of the request's records ingestion accepted (its answers say so record by record,
  a 503's too): a retry makes only the rest;
- the records it made but ingestion did not confirm (answered ``retry``, or in a chunk whose
  answer never came, and so possibly in ingestion after all): a retry sends those same records
  again, so a copy has the original's event id and the consumer drops it. Records ingestion
  rejected as invalid are not kept;
- the answer, once every record is in: a retry gets it again and nothing is made.

Keys live in memory (lost on restart) for ``KEY_TTL_SECONDS``, at most ``MAX_KEYS`` of them;
callers retry within a minute. Unconfirmed records are bounded by ``MAX_UNSENT_RECORDS`` in all:
beyond it the oldest key's are dropped (counted), and a retry under that key makes new ones.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from stages.common.errors import Conflict, Unavailable, Unprocessable
from stages.synthesis.schemas import SynthesizeRequest
from stages.synthesis.telemetry import UNSENT_DROPPED

KEY_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_KEYS = 8192
KEY_TTL_SECONDS = 120.0
MAX_UNSENT_RECORDS = 20_000
# A retry that arrives while an earlier attempt is still forwarding waits this long for it (the
# earlier one is past its caller's 10 s timeout, so near the end of its own 6 s budget). The
# wait counts against the retry's own budget, which runs from its arrival.
IN_PROGRESS_WAIT_SECONDS = 3.0


@dataclass(slots=True)  # one per synthesize call for two minutes: slots keep each small
class KeyedRequest:
    """What one key's attempts have achieved so far."""

    key: str
    fingerprint: bytes
    created: float
    forwarded: int = 0
    anomalous: int = 0
    # made for the key, not confirmed by ingestion; changed only through the ledger
    unsent: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False  # every record is in ingestion: a retry gets the same answer
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class KeyReused(Unprocessable):
    """The key was first used for a different request."""


class KeyInProgress(Conflict):
    """An earlier attempt with the key is still running."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def fingerprint(req: SynthesizeRequest) -> bytes:
    return hashlib.blake2b(req.model_dump_json().encode(), digest_size=16).digest()


def check_keyable(req: SynthesizeRequest) -> None:
    """Only forwarded requests have an effect worth guarding, and a replayed answer has no
    records (forwarded records are not kept)."""
    if not req.forward or req.return_records:
        raise Unprocessable(
            "Idempotency-Key needs forward: true and return_records: false "
            "(a replayed answer cannot carry the records)"
        )


class RequestLedger:
    def __init__(
        self,
        *,
        max_keys: int = MAX_KEYS,
        ttl_seconds: float = KEY_TTL_SECONDS,
        max_unsent_records: int = MAX_UNSENT_RECORDS,
        wait_seconds: float = IN_PROGRESS_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_keys = max_keys
        self._ttl = ttl_seconds
        self._max_unsent = max_unsent_records
        self._wait = wait_seconds
        self._clock = clock
        self._entries: dict[str, KeyedRequest] = {}  # in creation order
        self._unsent = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def unsent_records(self) -> int:
        with self._lock:
            return self._unsent

    @contextmanager
    def claim(self, key: str, req: SynthesizeRequest) -> Iterator[KeyedRequest]:
        """The key's entry, held exclusively: attempts with one key run one after another."""
        entry = self._entry(key, fingerprint(req))
        if not entry.lock.acquire(timeout=self._wait):
            raise KeyInProgress(
                f"a request with this Idempotency-Key is still running after {self._wait:g} s; "
                "retry later"
            )
        try:
            yield entry
        finally:
            entry.lock.release()

    def keep_unsent(self, entry: KeyedRequest, records: list[dict[str, Any]]) -> None:
        """Remember the records a retry must send again (none: forget them)."""
        with self._lock:
            if self._entries.get(entry.key) is not entry:
                # forgotten between claiming and locking (expired, or the bound): a retry
                # would not find these
                _count_dropped(len(records))
                records = []
            self._unsent += len(records) - len(entry.unsent)
            entry.unsent = records
            for other in self._entries.values():  # oldest first
                if self._unsent <= self._max_unsent:
                    break
                if not other.lock.locked():  # one being sent now comes back or gets in
                    self._drop_unsent(other)

    def _drop_unsent(self, entry: KeyedRequest) -> None:
        _count_dropped(len(entry.unsent))
        self._unsent -= len(entry.unsent)
        entry.unsent = []

    def _entry(self, key: str, print_: bytes) -> KeyedRequest:
        now = self._clock()
        with self._lock:
            self._forget_expired(now)
            entry = self._entries.get(key)
            if entry is None:
                self._make_room()
                entry = self._entries[key] = KeyedRequest(key, print_, now)
            elif entry.fingerprint != print_:
                raise KeyReused("this Idempotency-Key was used for a different request")
            return entry

    def _forget_expired(self, now: float) -> None:
        # Entries are in creation order, so the expired ones are at the front. One with an
        # attempt running (or waiting) stays until it is idle: a retry must still find it.
        expired = []
        for entry in self._entries.values():
            if now - entry.created < self._ttl:
                break
            if not entry.lock.locked():
                expired.append(entry)
        for entry in expired:
            self._forget(entry)

    def _make_room(self) -> None:
        """At the bound, forget the oldest finished request; never one that may be retried."""
        if len(self._entries) < self._max_keys:
            return
        finished = next(
            (e for e in self._entries.values() if e.finished and not e.lock.locked()),
            None,
        )
        if finished is None:
            raise Unavailable(
                f"{len(self._entries)} keyed requests are unfinished; retry later", retry_after=1
            )
        self._forget(finished)

    def _forget(self, entry: KeyedRequest) -> None:
        self._drop_unsent(entry)
        del self._entries[entry.key]


def _count_dropped(records: int) -> None:
    if records:
        UNSENT_DROPPED.inc(records)

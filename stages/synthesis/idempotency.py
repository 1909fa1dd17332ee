"""Idempotency keys for ``POST /api/synthesize``.

Each synthesize call makes new records (new event ids), so a caller that retries after losing an
answer (a read timeout, a dropped connection) would otherwise put a second set of records into the
lake, which the consumer's duplicate window cannot recognise. With an ``Idempotency-Key`` header,
synthesis remembers how many of the request's records ingestion already accepted: a retry makes
only the rest, and a retry of a finished request gets the same answer without making anything.

Keys live in memory (lost on restart), for ``KEY_TTL_SECONDS`` and at most ``MAX_KEYS`` of them;
callers retry within seconds.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from stages.common.errors import Conflict, Unprocessable
from stages.synthesis.schemas import SynthesizeRequest, SynthesizeResponse

KEY_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_KEYS = 4096
KEY_TTL_SECONDS = 300.0
# A retry that arrives while its first attempt is still forwarding waits this long for it: the
# forwarder's own budget is 6 s, so the first attempt has normally answered by then.
IN_PROGRESS_WAIT_SECONDS = 8.0


@dataclass
class KeyedRequest:
    """What one key's attempts have achieved so far."""

    fingerprint: bytes
    created: float
    forwarded: int = 0
    anomalous: int = 0
    answer: SynthesizeResponse | None = None  # set once every record was forwarded
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
    """Only forwarded requests have an effect worth guarding, and their answers can be
    replayed only without records (records are not kept)."""
    if not req.forward or req.return_records:
        raise Unprocessable(
            "Idempotency-Key needs forward: true and return_records: false "
            "(the records themselves are not kept for a replay)"
        )


class RequestLedger:
    def __init__(
        self,
        *,
        max_keys: int = MAX_KEYS,
        ttl_seconds: float = KEY_TTL_SECONDS,
        wait_seconds: float = IN_PROGRESS_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_keys = max_keys
        self._ttl = ttl_seconds
        self._wait = wait_seconds
        self._clock = clock
        self._entries: OrderedDict[str, KeyedRequest] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

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

    def _entry(self, key: str, print_: bytes) -> KeyedRequest:
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = KeyedRequest(print_, now)
            elif entry.fingerprint != print_:
                raise KeyReused("this Idempotency-Key was used for a different request")
            return entry

    def _forget_old(self, now: float) -> None:
        # Entries are in creation order, so the expired ones are at the front. An entry dropped
        # while its attempt runs is harmless to that attempt, which holds its own reference.
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if len(self._entries) < self._max_keys and now - oldest.created < self._ttl:
                return
            self._entries.popitem(last=False)

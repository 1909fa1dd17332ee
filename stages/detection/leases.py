"""Services split between detection processes by lease: one holder per service at a time.

The unit of work is a service (its ensemble spans all its series). Each service has a
:class:`~stages.common.named_lease.NamedLease` in ``DETECTION_LEASE_TABLE``, named after the
service; the consumer's pattern for shards, applied to services:

- **Taking.** A process takes free leases (a new service, one released by its holder, one whose
  holder stopped renewing it for ``DETECTION_LEASE_SECONDS``) until it holds its share:
  ``ceil(services / live processes)``, a live process being one that holds an unexpired lease.
- **Balancing.** A process holding at least two services fewer than the busiest one asks that
  one for a service (``NamedLease.request``). The holder hands it over at its next round: it
  checkpoints what it scored, then releases the lease, which the asking process takes (for one
  lease duration, a released lease asked for is left to the process that asked; an asking
  process counts as live, so the others' shares make room for it). A lease never changes hands
  behind a live holder's back, so balancing rescores nothing.
- **Fencing.** A holder writes a service's events, alerts and checkpoint only while
  :meth:`ServiceLeases.ready` says it holds the lease with ``margin`` seconds to spare (its own
  clock, renewed every third of the duration by :meth:`tick`); a takeover happens only after the
  lease ran out. The checkpoint's conditional write (one writer per generation) backs that up.
  Each take bumps the lease's fence, so a service lost and taken again is reloaded from its
  checkpoint, never continued from memory.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from stages.common.counters import OutcomeCounters
from stages.common.named_lease import LeaseLost, LeaseState, NamedLease, read_all

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class ServiceLeases:
    """This process's view of the service leases; :meth:`tick` runs on its own thread."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        owner: str,
        duration_seconds: float,
        counters: OutcomeCounters,
    ) -> None:
        self.db = dynamodb
        self.table = table
        self.owner = owner
        self.duration = duration_seconds
        # Writes stop this long before the lease would run out unrenewed: a commit started
        # inside the lease ends before anyone may take the service over.
        self.margin = duration_seconds / 4
        self.counters = counters
        self._held: dict[str, NamedLease] = {}
        self._wanted: set[str] = set()  # held services another process asked for
        self._known: set[str] = set()  # services seen in the data or the checkpoints
        self._requested: str | None = None  # the service this process asked for
        self._lock = threading.Lock()
        self.last_tick_ok: float | None = None  # monotonic
        self.last_error: str | None = None
        self.live_processes = 1
        self.services_total = 0
        self.on_change: Callable[[], None] | None = None  # a lease came, went or was asked for

    # --- what the detection loop asks --------------------------------------------------------
    def add_services(self, names: Iterable[str]) -> None:
        with self._lock:
            self._known.update(names)

    def owned(self) -> dict[str, int]:
        """Service -> fence of each lease held now with time to spare for a commit."""
        with self._lock:
            return {
                name: lease.fence
                for name, lease in self._held.items()
                if lease.fence is not None and lease.held(self.margin)
            }

    def ready(self, service: str, fence: int) -> bool:
        """True while this process holds ``service``'s lease taken with ``fence``, with time
        to spare: the check made before every write for the service."""
        with self._lock:
            lease = self._held.get(service)
        return lease is not None and lease.fence == fence and lease.held(self.margin)

    def wanted(self) -> list[str]:
        """Held services another process asked for: hand them over at the next round."""
        with self._lock:
            return sorted(self._wanted & self._held.keys())

    def release(self, service: str) -> None:
        """Hand ``service`` back (after its last checkpoint): another process takes it at once."""
        with self._lock:
            lease = self._held.pop(service, None)
            self._wanted.discard(service)
        if lease is None:
            return
        try:
            lease.release()
            self.counters.inc("leases_released")
            log.info("%s: lease released", service)
        except Exception as exc:
            # It expires instead, DETECTION_LEASE_SECONDS later.
            log.warning("%s: could not release the lease: %s", service, exc)

    def release_all(self) -> None:
        with self._lock:
            names = list(self._held)
        for name in names:
            self.release(name)

    # --- coordination ------------------------------------------------------------------------
    def tick(self) -> None:
        states = read_all(self.db, self.table)
        now_ms = _now_ms()
        by_name = {s.name: s for s in states}
        self._renew(by_name)
        with self._lock:
            services = self._known | by_name.keys()
            held = set(self._held)
        asking = {
            s.wanted_by
            for s in states
            if s.wanted_by and now_ms - s.wanted_ms < self.duration * 1000
        }
        live = {s.owner for s in states if s.owner and not s.expired(now_ms)} | asking
        live.add(self.owner)
        target = math.ceil(len(services) / len(live)) if services else 0
        self.live_processes, self.services_total = len(live), len(services)
        owned = len(held)
        candidates = [
            name
            for name in services
            if name not in held
            and (
                name not in by_name
                or by_name[name].expired(now_ms)
                or by_name[name].owner == self.owner  # ours before a restart with the same id
            )
            and not self._reserved(by_name.get(name), now_ms)
        ]
        random.shuffle(candidates)
        # The service this process asked for first, so the one handed over comes here.
        candidates.sort(key=lambda name: name != self._requested)
        for name in candidates:
            if owned >= target:
                break
            lease = NamedLease(self.db, self.table, name, self.owner, self.duration)
            if not lease.acquire():
                continue
            with self._lock:
                self._held[name] = lease
            owned += 1
            self._changed()
            if name == self._requested:
                self._requested = None
                self.counters.inc("leases_stolen")
                log.info("%s: lease handed over to this process to balance the load", name)
            else:
                self.counters.inc("leases_taken")
                previous = by_name.get(name)
                log.info(
                    "%s: lease taken (%s)",
                    name,
                    f"expired, held by {previous.owner}"
                    if previous is not None and previous.owner
                    else "free",
                )
        if not candidates:
            self._ask_for_one(states, now_ms, owned)
        self.last_tick_ok = time.monotonic()
        self.last_error = None

    def _reserved(self, state: LeaseState | None, now_ms: int) -> bool:
        """Released for another process that asked for it, within one lease duration."""
        return (
            state is not None
            and state.owner is None
            and state.wanted_by is not None
            and state.wanted_by != self.owner
            and now_ms - state.wanted_ms < self.duration * 1000
        )

    def _renew(self, by_name: dict[str, LeaseState]) -> None:
        with self._lock:
            held = list(self._held.items())
        for name, lease in held:
            state = by_name.get(name)
            lost = state is None or state.owner != self.owner or state.fence != lease.fence
            if not lost and lease.valid_for() > self.duration * 2 / 3:
                self._note_request(name, state)
                continue
            try:
                if lost:
                    raise LeaseLost(name)
                lease.renew()
            except LeaseLost:
                with self._lock:
                    self._held.pop(name, None)
                    self._wanted.discard(name)
                self.counters.inc("leases_lost")
                log.warning("%s: lease lost to another process; the service is dropped", name)
                self._changed()
                continue
            except Exception as exc:
                # Retried at the next tick; writes stop once the lease is within its margin.
                log.warning("%s: lease renewal failed: %s", name, exc)
            self._note_request(name, state)

    def _note_request(self, name: str, state: LeaseState | None) -> None:
        with self._lock:
            if state is not None and state.wanted_by and state.wanted_by != self.owner:
                new = name not in self._wanted
                self._wanted.add(name)
            else:
                new = False
                self._wanted.discard(name)
        if new:
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _ask_for_one(self, states: list[LeaseState], now_ms: int, owned: int) -> None:
        """Balance: ask the busiest live process for one service when it holds at least two
        more than this one (so a hand-over always narrows the gap)."""
        by_owner: dict[str, list[LeaseState]] = {}
        for state in states:
            if state.owner and state.owner != self.owner and not state.expired(now_ms):
                by_owner.setdefault(state.owner, []).append(state)
        if not by_owner:
            return
        busiest, theirs = max(by_owner.items(), key=lambda item: (len(item[1]), item[0]))
        if len(theirs) - owned < 2:
            return
        if any(s.wanted_by == self.owner for s in theirs):
            return  # asked already; the holder hands it over at its next round
        state = random.choice(theirs)
        lease = NamedLease(self.db, self.table, state.name, self.owner, self.duration)
        if lease.request(state):
            self._requested = state.name
            log.info("%s: asked %s to hand the service over", state.name, busiest)

    def run(self, stop: threading.Event) -> None:
        """Tick every third of the lease (at most every second) until ``stop``."""
        interval = min(1.0, self.duration / 3)
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("lease round failed: %s", self.last_error)
            stop.wait(interval)

    def healthy(self) -> bool:
        """Coordination ran within the last lease duration."""
        return self.last_tick_ok is not None and time.monotonic() - self.last_tick_ok < max(
            self.duration, 5.0
        )

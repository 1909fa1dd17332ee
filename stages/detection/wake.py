"""Wakes the detection loop as soon as ``telemetry.features`` has a new commit.

A bucket is written to the features table once, right after its watermark; waiting for the next
``DETECTION_INTERVAL_SECONDS`` round after that adds up to a whole interval to the time to
detect. Polling the table itself that often would cost a round's reads (metadata, manifests);
the Glue catalog's entry for the table changes with every commit instead (its
``metadata_location`` parameter, which an Iceberg commit swaps with a version check), and one
GetTable is cheap. So every ``DETECTION_WAKE_POLL_SECONDS`` the watch reads that parameter and,
when it moved, starts a round at once. The interval stays the fallback: a watch that cannot
reach the catalog only loses the early start, and every round then waits its whole interval. So
a failing watch is not silent: each failure counts in ``detection_wake_errors_total``, the first
one is a warning, and while it goes on one warning per ``WARN_EVERY_SECONDS`` says how many
failed since (a watch polling every second would otherwise write a line a second).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from stages.common.counters import OutcomeCounters
from stages.common.lakehouse import FEATURES_TABLE

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 60.0


class FeaturesWatch:
    def __init__(
        self,
        glue: Any,
        on_commit: Callable[[], None],
        every: float,
        counters: OutcomeCounters | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.glue = glue
        self.on_commit = on_commit
        self.every = every
        self.counters = counters
        self.clock = clock
        self.database, _, self.table = FEATURES_TABLE.partition(".")
        self.last: str | None = None
        self.commits_seen = 0
        self.errors = 0
        self._failing_since_warning = 0  # failures not yet reported in a warning
        self._last_warning: float | None = None  # clock() of the last warning of this run

    def location(self) -> str | None:
        """The table's current metadata file; None while the table does not exist."""
        try:
            table = self.glue.get_table(DatabaseName=self.database, Name=self.table)["Table"]
        except self.glue.exceptions.EntityNotFoundException:
            return None
        return table.get("Parameters", {}).get("metadata_location")

    def check(self) -> bool:
        """Read the catalog once; True (and the loop woken) when the table moved since the last
        check. The first reading only sets the reference."""
        location = self.location()
        moved = self.last is not None and location is not None and location != self.last
        if location is not None:
            self.last = location
        if moved:
            self.commits_seen += 1
            self.on_commit()
        return moved

    def poll(self) -> None:
        """One check; a failure is counted and reported, never raised (the interval still runs
        the rounds)."""
        try:
            self.check()
        except Exception as exc:
            self._failed(exc)
            return
        if self._last_warning is not None:
            log.info(
                "features watch: the Glue catalog answers again (%d more failures since the last "
                "warning); detection starts a round at each features commit",
                self._failing_since_warning,
            )
            self._last_warning = None
            self._failing_since_warning = 0

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self.counters is not None:
            self.counters.inc("wake_errors")
        now = self.clock()
        if self._last_warning is not None and now - self._last_warning < WARN_EVERY_SECONDS:
            self._failing_since_warning += 1
            log.debug("features watch: %s: %s", type(exc).__name__, exc)
            return
        log.warning(
            "features watch cannot read the Glue entry of %s.%s (%s: %s; %d failures in all, "
            "%d since the last warning): detection rounds wait their whole interval until it can",
            self.database,
            self.table,
            type(exc).__name__,
            exc,
            self.errors,
            self._failing_since_warning + 1,
        )
        self._last_warning = now
        self._failing_since_warning = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            self.poll()

"""Wakes the detection loop as soon as ``telemetry.features`` has a new commit.

A bucket is written to the features table once, right after its watermark; waiting for the next
``DETECTION_INTERVAL_SECONDS`` round after that adds up to a whole interval to the time to
detect. Polling the table itself that often would cost a round's reads (metadata, manifests);
the Glue catalog's entry for the table changes with every commit instead (its
``metadata_location`` parameter, which an Iceberg commit swaps with a version check), and one
GetTable is cheap. So every ``DETECTION_WAKE_POLL_SECONDS`` the watch reads that parameter and,
when it moved, starts a round at once. The interval stays the fallback: a watch that cannot
reach the catalog only loses the early start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from stages.common.lakehouse import FEATURES_TABLE

log = logging.getLogger(__name__)


class FeaturesWatch:
    def __init__(self, glue: Any, on_commit: Callable[[], None], every: float) -> None:
        self.glue = glue
        self.on_commit = on_commit
        self.every = every
        self.database, _, self.table = FEATURES_TABLE.partition(".")
        self.last: str | None = None
        self.commits_seen = 0
        self.errors = 0

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

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            try:
                self.check()
            except Exception as exc:  # the interval still runs the rounds
                self.errors += 1
                log.debug("features watch: %s", exc)

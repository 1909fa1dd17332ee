"""Test-only fault injection: stop the ETL at a named step of a fold, for a test to SIGKILL it.

``ETL_FAULT_PAUSE_AT=<step>[:<n>]`` makes the fold that reaches ``step`` for the ``n``-th time
in this process (default: the first) log ``fault injection: paused at <step>`` and wait there
until the process is killed. Steps:

- ``before-write``: the new raw objects are read and typed, nothing is written yet;
- ``after-data-files``: a table's data files are in S3, its snapshot is not committed (``:n``
  picks the n-th table commit of the process: tables are committed quarantine first, then
  logs, metrics, apm, so ``after-data-files:2`` stops with the quarantine rows committed and the
  logs not);
- ``after-commit``: every table's snapshot is committed, the fold's bookkeeping (in memory,
  counters, commit callbacks) is not done.

Unset (the default) each step costs one comparison.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

STEPS = ("before-write", "after-data-files", "after-commit")


class FaultPoint:
    def __init__(self, spec: str | None) -> None:
        self.step: str | None = None
        self.occurrence = 1
        if spec:
            step, _, nth = spec.partition(":")
            if step not in STEPS:
                raise ValueError(f"unknown fault step {step!r}; known: {', '.join(STEPS)}")
            self.step = step
            self.occurrence = int(nth) if nth else 1
        self._reached = 0
        self._lock = threading.Lock()

    def reach(self, step: str) -> None:
        if step != self.step:
            return
        with self._lock:
            self._reached += 1
            due = self._reached == self.occurrence
        if not due:
            return
        log.warning("fault injection: paused at %s", step)
        threading.Event().wait()

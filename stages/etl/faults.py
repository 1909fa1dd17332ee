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

from stages.common.faults import FaultPoint as SharedFaultPoint

log = logging.getLogger(__name__)

STEPS = ("before-write", "after-data-files", "after-commit")


class FaultPoint(SharedFaultPoint):
    def __init__(self, spec: str | None) -> None:
        super().__init__(spec, STEPS)

    def reach(self, step: str) -> None:
        """Wait at ``step`` until the process is killed, if the step is due."""
        if not self.due(step):
            return
        log.warning("fault injection: paused at %s", step)
        threading.Event().wait()

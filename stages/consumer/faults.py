"""Test-only fault injection: stop a shard worker at a named step of a flush.

``CONSUMER_FAULT_PAUSE_AT=<step>[:<n>]`` makes the worker that reaches ``step`` for the ``n``-th
time in this process (default: the first) log ``fault injection: paused at <step>`` and wait
there until it is told to stop (SIGTERM) or loses its lease; a test then sends the signal it
wants (SIGKILL kills it right there, SIGTERM lets the flush go on as a stop request would). Steps:

- ``before_upload``: the pending range is recorded in the lease, no object is uploaded yet;
- ``between_uploads``: the flush's first object is uploaded, the others are not;
- ``before_checkpoint``: every object is uploaded, the checkpoint is not written;
- ``replay``: a pending range left by a previous owner is partly read back into the buffer.

Unset (the default) the hooks cost one comparison per step and never wait.
"""

from __future__ import annotations

import logging
import threading

from stages.common.faults import FaultPoint as SharedFaultPoint

log = logging.getLogger(__name__)

STEPS = ("before_upload", "between_uploads", "before_checkpoint", "replay")


class FaultPoint(SharedFaultPoint):
    def pause(
        self, step: str, where: str, released: threading.Event, lost: threading.Event
    ) -> None:
        """Wait at ``step`` until a stop is requested or the lease is lost, if the step is due."""
        if not self.due(step):
            return
        log.warning("%s: fault injection: paused at %s", where, step)
        while not (released.is_set() or lost.is_set()):
            released.wait(0.05)
        log.warning("%s: fault injection: resumed after %s", where, step)

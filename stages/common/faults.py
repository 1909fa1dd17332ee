"""Test-only fault injection shared by the services that have a fault suite.

A service reads a ``<SERVICE>_FAULT_PAUSE_AT=<step>[:<n>]`` setting; the ``n``-th time (default:
the first) a process reaches ``step`` is *due*, and the service pauses there in its own way so a
test can kill it at that exact point. Unset (the default), each step costs one comparison.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence


class FaultPoint:
    """Counts the steps reached in this process and says when the configured one is due."""

    def __init__(self, spec: str | None, steps: Sequence[str] | None = None) -> None:
        self.step: str | None = None
        self.occurrence = 1
        if spec:
            step, _, nth = spec.partition(":")
            if steps is not None and step not in steps:
                raise ValueError(f"unknown fault step {step!r}; known: {', '.join(steps)}")
            self.step = step
            self.occurrence = int(nth) if nth else 1
        self._reached = 0
        self._lock = threading.Lock()

    def due(self, step: str) -> bool:
        if step != self.step:
            return False
        with self._lock:
            self._reached += 1
            return self._reached == self.occurrence

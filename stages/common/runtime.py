"""Process-wide settings every long-running process of the pipeline applies at start."""

from __future__ import annotations

import gc

# Records are short-lived dicts by the thousand per request: with CPython's default threshold
# (700 allocations) the cyclic collector ran hundreds of times a second on the data path and
# was the largest single cost at high rates (Stage 00 into Kinesis went from ~9,700 to ~12,200
# records/s on two cores). Collections still happen, only less often; what start-up created
# (modules, schemas, catalogues) is frozen out of them.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

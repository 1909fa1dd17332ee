"""Process-wide settings every long-running process of the pipeline applies at start."""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import gc
import threading

# Records are short-lived dicts by the thousand per request: with CPython's default threshold
# (700 allocations) the cyclic collector ran hundreds of times a second on the data path and
# was the largest single cost at high rates (docs/performance.md has what raising the
# thresholds gained). Collections still happen, only less often; what start-up created
# (modules, schemas, catalogues) is frozen out of them.
GC_THRESHOLDS = (50_000, 20, 20)

# glibc's mallopt parameter for the number of arenas (malloc.h).
_M_ARENA_MAX = -8
# Threads of a busy server each get their own glibc arena (up to eight per core), and freed
# request buffers stay in them; two arenas are enough for processes that spend their time
# holding the GIL anyway.
ARENA_MAX = 2


def tune_process(memory_reclaim_seconds: float) -> None:
    """Garbage collector and allocator settings for a long-running process of the pipeline."""
    tune_garbage_collector()
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
    if memory_reclaim_seconds > 0:
        thread = threading.Thread(
            target=_reclaim_forever,
            args=(memory_reclaim_seconds,),
            name="memory-reclaim",
            daemon=True,
        )
        thread.start()
        atexit.register(_stop_reclaim, thread)


# Set at exit: the reclaim thread ends before the interpreter finalizes. A collection or a
# malloc_trim still running in a daemon thread then can kill the process (SIGSEGV) after an
# otherwise clean shutdown.
_RECLAIM_STOP = threading.Event()


def _stop_reclaim(thread: threading.Thread) -> None:
    _RECLAIM_STOP.set()
    thread.join(5.0)


def tune_garbage_collector() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    # musl and macOS have neither function; the process then runs with its allocator's defaults.
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


# A full collection walks every live object (the emulator's records and objects, the consumer's
# windows, consolidation's index), so one on every round was a visible share of those processes'
# CPU under load, and so was the middle generation, where everything long-lived passes through.
# Garbage made since the last collection is in the youngest generation, so that one is collected
# on every round (under load the collector's own thresholds take care of the rest); everything
# only on every FULL_COLLECTION_ROUNDS-th (5 minutes at the default interval: a full collection
# every 30 s still showed in the emulator's profiles under load).
FULL_COLLECTION_ROUNDS = 150


def reclaim_memory(full: bool = False) -> None:
    """One round of what the memory-reclaim thread does: a collection, then ``malloc_trim``."""
    gc.collect(2 if full else 0)
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _reclaim_forever(interval: float) -> None:
    # With the raised thresholds, garbage in reference cycles (framework request objects hold
    # their bodies in such cycles) waits for a collection that, when a process makes few but
    # large objects, may not come for a long time: the emulator held more memory in old request
    # bodies than all the PutRecords it had been sent. A timed collection bounds that by the
    # interval instead. Then large buffers freed in the middle of glibc's heap, where free()
    # never hands pages back, are returned by malloc_trim.
    rounds = 0
    while not _RECLAIM_STOP.wait(interval):
        rounds += 1
        reclaim_memory(full=rounds % FULL_COLLECTION_ROUNDS == 0)

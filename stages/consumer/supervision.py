"""Which shards are not making progress, for the consumer's /health.

A worker thread that ends with an exception is started again by the coordinator from the
checkpoint. If the cause is in the data or the lease, it dies again on the same record, forever:
the consumer must say so instead of reporting healthy. A shard counts as failing once its worker
has died ``max_deaths`` times in a row without its checkpoint moving, and as stalled when its
worker has neither checkpointed nor had an empty buffer for ``stall_seconds`` (stuck in a retry
loop, or reading without ever being able to write).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from stages.common.retry import backoff_ceiling
from stages.consumer import metrics

MAX_DEATHS_WITHOUT_PROGRESS = 3


class SupervisedWorker(Protocol):
    key: str
    stream: str
    shard_id: str
    checkpoint: str
    progress_at: float
    error: str | None


@dataclass
class _Failing:
    stream: str
    shard_id: str
    checkpoint: str
    deaths: int
    error: str
    died_at: float


class ShardSupervisor:
    def __init__(
        self,
        stall_seconds: float,
        max_deaths: int = MAX_DEATHS_WITHOUT_PROGRESS,
        max_restart_delay: float = 5.0,
    ) -> None:
        self.stall_seconds = stall_seconds
        self.max_deaths = max_deaths
        self.max_restart_delay = max_restart_delay
        self._failing: dict[str, _Failing] = {}
        self._lock = threading.Lock()  # health() reads from the HTTP thread

    def worker_died(self, worker: SupervisedWorker, now: float | None = None) -> None:
        """The worker's thread ended with ``worker.error``; it will be started again."""
        now = time.monotonic() if now is None else now
        metrics.WORKER_RESTARTS.labels(worker.stream, worker.shard_id).inc()
        error = worker.error or "unknown error"
        with self._lock:
            failing = self._failing.get(worker.key)
            if failing is not None and failing.checkpoint == worker.checkpoint:
                failing.deaths += 1
                failing.error = error
                failing.died_at = now
            else:
                self._failing[worker.key] = _Failing(
                    worker.stream, worker.shard_id, worker.checkpoint, 1, error, now
                )

    def may_restart(self, key: str, now: float | None = None) -> bool:
        """False while a shard that keeps dying at one checkpoint waits out its backoff.

        The first restart is immediate; then 0.5 s, 1 s, 2 s, ... up to ``max_restart_delay``,
        so a worker that cannot get past a checkpoint does not re-read the shard in a tight loop.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            failing = self._failing.get(key)
            if failing is None or failing.deaths < 2:
                return True
            # The policy's ceiling, without jitter: restarts of one shard are not many callers
            # to spread, and a fixed schedule keeps the wait predictable.
            delay = backoff_ceiling(failing.deaths - 1, base=0.25, cap=self.max_restart_delay)
            return now >= failing.died_at + delay

    def observe(self, worker: SupervisedWorker) -> None:
        """A running worker: once its checkpoint has moved, its earlier deaths are forgiven."""
        with self._lock:
            failing = self._failing.get(worker.key)
            if failing is not None and failing.checkpoint != worker.checkpoint:
                del self._failing[worker.key]

    def retain(self, keys: set[str]) -> None:
        """Forget the shards this process no longer holds a lease on."""
        with self._lock:
            for key in [k for k in self._failing if k not in keys]:
                del self._failing[key]

    def problems(self, workers: list[SupervisedWorker], now: float | None = None) -> list[str]:
        """One sentence per shard that is failing or stalled, naming its stream and shard."""
        now = time.monotonic() if now is None else now
        reasons = []
        with self._lock:
            failing = sorted(self._failing.items())
        for _key, f in failing:
            if f.deaths >= self.max_deaths:
                reasons.append(
                    f"shard worker for stream {f.stream} shard {f.shard_id} died {f.deaths} "
                    f"times without progress from checkpoint {f.checkpoint}: {f.error}"
                )
        for worker in sorted(workers, key=lambda w: w.key):
            idle = now - worker.progress_at
            if idle >= self.stall_seconds:
                reasons.append(
                    f"stream {worker.stream} shard {worker.shard_id} has made no progress for "
                    f"{idle:.0f} s: no checkpoint and no read that left nothing to write "
                    f"(checkpoint {worker.checkpoint}; the log says what it is retrying)"
                )
        return reasons

"""The Kinesis consumer process: leases, shard workers, health and metrics.

``python -m stages.consumer`` reads every shard of the configured streams into their buckets.
Several processes can run at once: they split the shards through the lease table and take over
the shards of one that stops renewing its leases.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY

from stages.common import aws, resources
from stages.common.config import Settings, get_settings
from stages.common.logging_setup import configure_logging
from stages.common.resources import StreamSpec
from stages.common.runtime import tune_process
from stages.common.service import create_service_app, serve_in_thread
from stages.consumer import metrics
from stages.consumer.batcher import FlushLimits
from stages.consumer.faults import FaultPoint
from stages.consumer.leases import DynamoLeaseStore, Lease, LeaseLost, LeaseStore, lease_key
from stages.consumer.supervision import ShardSupervisor
from stages.consumer.worker import ShardWorker, WorkerConfig

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 30.0


@dataclass
class _Seen:
    owner: str | None
    counter: int
    since: float  # monotonic time the (owner, counter) pair was first seen


class Consumer:
    def __init__(
        self,
        settings: Settings,
        *,
        kinesis: Any,
        s3: Any,
        store: LeaseStore,
        worker_id: str,
        streams: tuple[StreamSpec, ...],
    ) -> None:
        self.settings = settings
        self.kinesis = kinesis
        self.s3 = s3
        self.store = store
        self.worker_id = worker_id
        self.streams = {spec.name: spec for spec in streams}
        self.limits = FlushLimits(
            settings.flush_max_records, settings.flush_max_bytes, settings.flush_max_age_seconds
        )
        self.faults = FaultPoint(settings.consumer_fault_pause_at)
        self.workers: dict[str, ShardWorker] = {}
        # A buffer may rightly wait a whole flush age before its checkpoint moves.
        self.supervisor = ShardSupervisor(
            settings.consumer_stall_seconds + settings.flush_max_age_seconds,
            # Short enough that the lease, not renewed while no worker runs, does not expire.
            max_restart_delay=min(
                settings.consumer_max_backoff_seconds, settings.lease_duration_seconds / 3
            ),
        )
        self.seen: dict[str, _Seen] = {}
        self.ending_sequences: dict[str, str] = {}
        self.stop_event = threading.Event()
        self.shutdown_deadline: float | None = None
        self.last_tick_ok: float | None = None
        self.last_error: str | None = None
        self._last_sync = -math.inf
        self.tick_interval = min(1.0, settings.lease_duration_seconds / 3)
        # Read at scrape time, so the gauges are never a tick old.
        metrics.OWNED_SHARDS.set_function(lambda: len(self.workers))
        metrics.OPEN_PARTITIONS.set_function(self.open_partitions)
        metrics.BUFFERED_RECORDS.set_function(
            lambda: sum(len(w.buffer) for w in list(self.workers.values()))
        )
        metrics.OLDEST_UNFLUSHED_AGE.set_function(
            lambda: max((w.buffer.age() for w in list(self.workers.values())), default=0.0)
        )

    # --- main loop ----------------------------------------------------------------------
    def run(self) -> int:
        log.info("consumer %s reading %s", self.worker_id, ", ".join(self.streams))
        while not self.stop_event.is_set():
            try:
                self.tick()
                self.last_tick_ok = time.monotonic()
                self.last_error = None
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("coordination round failed: %s", self.last_error)
            self.stop_event.wait(self.tick_interval)
        return self.shutdown()

    def request_stop(self, *_: Any) -> None:
        if self.shutdown_deadline is None:
            self.shutdown_deadline = time.monotonic() + SHUTDOWN_TIMEOUT_SECONDS
        self.stop_event.set()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_sync >= self.settings.shard_sync_interval_seconds:
            self.sync_shards()
            self._last_sync = now
        leases = self.store.list()
        self.observe(leases, now)
        self.supervisor.retain({lease.key for lease in leases if lease.owner == self.worker_id})
        self.renew_owned()
        self.reap_workers()
        self.acquire(leases, now)

    # --- shards and leases ----------------------------------------------------------------
    def sync_shards(self) -> None:
        for name in self.streams:
            kwargs: dict[str, Any] = {"StreamName": name}
            while True:
                page = self.kinesis.list_shards(**kwargs)
                for shard in page["Shards"]:
                    parents = tuple(
                        p
                        for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                        if p
                    )
                    self.store.create_if_missing(name, shard["ShardId"], parents)
                    ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                    if ending is not None:
                        self.ending_sequences[lease_key(name, shard["ShardId"])] = ending
                token = page.get("NextToken")
                if not token:
                    break
                kwargs = {"NextToken": token}
        for key, worker in self.workers.items():
            worker.ending_sequence = self.ending_sequences.get(key)

    def observe(self, leases: list[Lease], now: float) -> None:
        for lease in leases:
            seen = self.seen.get(lease.key)
            if seen is None or (seen.owner, seen.counter) != (lease.owner, lease.counter):
                self.seen[lease.key] = _Seen(lease.owner, lease.counter, now)

    def expired(self, lease: Lease, now: float) -> bool:
        """Free, or its owner has not renewed it for a whole lease duration (by our clock)."""
        if lease.owner is None:
            return True
        seen = self.seen.get(lease.key)
        return seen is not None and now - seen.since >= self.settings.lease_duration_seconds

    def renew_owned(self) -> None:
        for key, worker in list(self.workers.items()):
            if worker.lost.is_set():
                continue
            try:
                self.store.renew(key, self.worker_id)
            except LeaseLost:
                log.warning("%s: lease taken by another worker; dropping the shard", key)
                metrics.LEASES_LOST.inc()
                worker.lost.set()

    def reap_workers(self) -> None:
        for key, worker in list(self.workers.items()):
            if worker.is_alive():
                self.supervisor.observe(worker)
                continue
            del self.workers[key]
            if not worker.finished and not worker.lost.is_set():
                log.warning("%s: worker ended unexpectedly; the shard will be picked up again", key)
                if worker.error is not None:
                    self.supervisor.worker_died(worker)

    def acquire(self, leases: list[Lease], now: float) -> None:
        if self.stop_event.is_set():
            return
        by_shard = {(lease.stream, lease.shard_id): lease for lease in leases}
        active = [
            lease
            for lease in leases
            if lease.stream in self.streams
            and not lease.finished
            and self._parents_done(lease, by_shard)
        ]
        if not active:
            return
        live_owners = {
            lease.owner for lease in active if lease.owner and not self.expired(lease, now)
        } | {self.worker_id}
        target = math.ceil(len(active) / len(live_owners))
        # A lease we still own but run no worker for (the worker died): resume it directly,
        # or after a growing pause if it keeps dying at the same checkpoint.
        for lease in active:
            if (
                lease.owner == self.worker_id
                and lease.key not in self.workers
                and self.supervisor.may_restart(lease.key, now)
            ):
                self._start_worker(lease)
        owned = sum(1 for lease in active if lease.key in self.workers)
        candidates = [
            lease
            for lease in active
            if lease.key not in self.workers
            and lease.owner != self.worker_id
            and self.expired(lease, now)
        ]
        random.shuffle(candidates)
        for lease in candidates:
            if owned >= target:
                break
            taken = self.store.take(lease, self.worker_id)
            if taken is not None:
                metrics.LEASES_TAKEN.labels("expired" if lease.owner else "free").inc()
                self._start_worker(taken)
                owned += 1
        if owned < target and not candidates:
            self._steal_one(active, target, now)

    def _steal_one(self, active: list[Lease], target: int, now: float) -> None:
        """Balance: take one lease from the busiest live worker if it holds more than its share."""
        counts: dict[str, list[Lease]] = {}
        for lease in active:
            if lease.owner and lease.owner != self.worker_id and not self.expired(lease, now):
                counts.setdefault(lease.owner, []).append(lease)
        if not counts:
            return
        victim, theirs = max(counts.items(), key=lambda item: len(item[1]))
        if len(theirs) <= target:
            return
        lease = random.choice(theirs)
        taken = self.store.take(lease, self.worker_id)
        if taken is not None:
            log.info("%s: took over from %s to balance load", lease.key, victim)
            metrics.LEASES_TAKEN.labels("balance").inc()
            self._start_worker(taken)

    def _parents_done(self, lease: Lease, by_shard: dict[tuple[str, str], Lease]) -> bool:
        for parent in lease.parents:
            parent_lease = by_shard.get((lease.stream, parent))
            # A parent with no lease has aged out of the stream: nothing left to read first.
            if parent_lease is not None and not parent_lease.finished:
                return False
        return True

    def _start_worker(self, lease: Lease) -> None:
        config = WorkerConfig(
            owner=self.worker_id,
            bucket=self.streams[lease.stream].bucket,
            compression=self.settings.compression,
            limits=self.limits,
            get_records_limit=self.settings.get_records_limit,
            poll_interval=self.settings.poll_interval_seconds,
            max_backoff=self.settings.consumer_max_backoff_seconds,
            dedup_window_records=self.settings.dedup_window_records,
            faults=self.faults,
        )
        worker = ShardWorker(
            lease,
            config,
            self.kinesis,
            self.s3,
            self.store,
            self.open_partitions,
            self.settings.max_open_partitions,
            lambda: self.shutdown_deadline,
        )
        worker.ending_sequence = self.ending_sequences.get(lease.key)
        self.workers[lease.key] = worker
        log.info("%s: processing from %s", lease.key, lease.checkpoint)
        worker.start()

    # --- shutdown -----------------------------------------------------------------------
    def shutdown(self) -> int:
        """Flush every shard, checkpoint, and hand the leases back so others resume at once."""
        log.info("shutting down: flushing %d shards", len(self.workers))
        for worker in self.workers.values():
            worker.stop_requested.set()
        deadline = self.shutdown_deadline or time.monotonic() + SHUTDOWN_TIMEOUT_SECONDS
        clean = True
        for key, worker in self.workers.items():
            worker.join(max(0.0, deadline - time.monotonic()) + 1)
            if worker.is_alive() or not worker.clean_exit:
                clean = False
                log.error("%s: did not flush before the deadline; it will be re-read", key)
                continue
            if not worker.finished:
                try:
                    self.store.release(key, self.worker_id)
                except Exception as exc:
                    log.warning("%s: could not release lease: %s", key, exc)
        return 0 if clean else 1

    # --- status -------------------------------------------------------------------------
    def open_partitions(self) -> int:
        return sum(len(w.buffer.partitions) for w in list(self.workers.values()))

    def health(self) -> tuple[bool, dict[str, Any]]:
        stale_after = max(3 * self.tick_interval, 5.0)
        fresh = self.last_tick_ok is not None and time.monotonic() - self.last_tick_ok < stale_after
        now = time.monotonic()
        workers = list(self.workers.values())
        problems = self.supervisor.problems(workers, now)
        healthy = fresh and not self.stop_event.is_set() and not problems
        shards = [
            {
                "stream": w.stream,
                "shard_id": w.shard_id,
                "checkpoint": w.checkpoint,
                "buffered_records": len(w.buffer),
                "open_partitions": len(w.buffer.partitions),
                "millis_behind_latest": w.millis_behind,
                "seconds_since_progress": round(now - w.progress_at, 1),
            }
            for w in sorted(workers, key=lambda w: w.key)
        ]
        totals = {
            name: sum(
                REGISTRY.get_sample_value(f"{name}_total", {"stream": s}) or 0 for s in self.streams
            )
            for name in (
                "consumer_records_in",
                "consumer_records_out",
                "consumer_objects_written",
                "consumer_dead_letters",
                "consumer_duplicates_dropped",
            )
        }
        details: dict[str, Any] = {
            "worker_id": self.worker_id,
            "streams": {name: spec.bucket for name, spec in self.streams.items()},
            "owned_shards": shards,
            "records_in": totals["consumer_records_in"],
            "records_out": totals["consumer_records_out"],
            "objects_written": totals["consumer_objects_written"],
            "dead_letters": totals["consumer_dead_letters"],
            "duplicates_dropped": totals["consumer_duplicates_dropped"],
            "record_errors": _sum_samples("consumer_record_errors_total"),
            "worker_restarts": _sum_samples("consumer_worker_restarts_total"),
        }
        if not fresh:
            details["reason"] = self.last_error or "lease coordination has not run yet"
        elif self.stop_event.is_set():
            details["reason"] = "shutting down"
        elif problems:
            details["reason"] = "; ".join(problems)
        return healthy, details


def _sum_samples(name: str) -> float:
    """Sum of every labelled sample of a counter (0 before the first increment)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name
    )


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    tune_process(settings.memory_reclaim_seconds)
    consumer = Consumer(
        settings,
        kinesis=aws.client("kinesis", settings, retries=False),
        s3=aws.client("s3", settings, retries=False),
        store=DynamoLeaseStore(
            aws.client("dynamodb", settings, retries=False), settings.lease_table
        ),
        worker_id=settings.consumer_worker_id or default_worker_id(),
        streams=resources.consumer_streams(settings),
    )
    signal.signal(signal.SIGTERM, consumer.request_stop)
    signal.signal(signal.SIGINT, consumer.request_stop)
    app = create_service_app("kinesis-consumer", health=consumer.health)
    server = serve_in_thread(app, settings.consumer_host, settings.consumer_port)
    code = consumer.run()
    server.stop()
    raise SystemExit(code)

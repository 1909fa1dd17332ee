"""The detection loop: features in, scores, events and alerts out, exactly once per bucket.

Every ``DETECTION_INTERVAL_SECONDS``, for each service this process holds the lease of
(``leases.py``: several processes split the services), with the buckets of the data files added
to the features table since its last read that it has not read before (``progress.py``):

1. score every new bucket after its mark in bucket order with the service's ensemble (each point
   with only the points before it) and collect the event transitions;
   buckets before the mark (history generated on demand, a backfill, a late hour: the ETL writes
   older hours after newer ones) wait for a round that brings no more of them, then the
   service's models are rebuilt by a replay: a fresh ensemble fed the service's buckets of the
   last ``DETECTION_REPLAY_MAX_BUCKETS`` up to the mark, in time order, takes the place of the
   detectors; the event tracker stays the live one, so an open event goes on, and the replay
   alerts nothing (the events it closes wholly inside the new history are recorded, marked
   ``history``); a few late buckets just behind the mark (``LATE_MAX_BUCKETS``) are not worth a
   replay: they are marked read and counted as skipped;
2. write each changed event (``store.py``) and put each transition in the alert outbox
   (``alerts.py``) tagged with the next checkpoint generation;
3. checkpoint progress and model state together (``checkpoint.py``);
4. deliver the outbox.

A failure in 1-3 discards the service's in-memory ensemble; it is reloaded from its checkpoint at
the next round, so the buckets are scored again from the same state and give the same
transitions (same outbox keys, same event documents). A restart does the same: it resumes from
the checkpoint, neither relearning nor re-scoring nor re-alerting.

Ownership: a service is loaded from its checkpoint when this process takes its lease (its
outbox entries newer than that checkpoint are dropped: the previous holder never checkpointed
them, rescoring recreates them), and dropped from memory when the lease is lost. Every write for
a service (events, outbox, checkpoint, delivery) is preceded by a check that the lease is still
held with time to spare; a lease asked for by another process is handed over after a last
checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from stages.common import aws, resources
from stages.common.config import Settings
from stages.detection.alerts import (
    Dispatcher,
    Outbox,
    RoundResult,
    SqsTarget,
    WebhookTarget,
    message,
)
from stages.detection.checkpoint import CheckpointConflict, CheckpointStore
from stages.detection.decision import DecisionEngine
from stages.detection.detectors import parse_rules
from stages.detection.ensemble import ServiceEnsemble
from stages.detection.events_table import ensure_anomalies_table, rows
from stages.detection.leases import ServiceLeases
from stages.detection.metrics import LAG, OPEN_EVENTS, OUTBOX_PENDING, OWNED_SERVICES, counters
from stages.detection.progress import Coverage, Progress
from stages.detection.reader import FeatureReader, Point, SeriesSpec, parse_series
from stages.detection.store import EventNotFound, EventStore, event_document, iso
from stages.detection.wake import FeaturesWatch

log = logging.getLogger(__name__)

# Consecutive failed rounds after which /health says unhealthy.
UNHEALTHY_AFTER_FAILURES = 3
# How old the in-memory copy of the shared events may be when /api/anomalies answers.
EVENTS_MAX_AGE_SECONDS = 1.0
# A replay waits for a round that brings no more history (the ETL folds a backfill over several
# commits, and each replay costs the whole window), but not longer than this.
REPLAY_WAIT_SECONDS = 300.0
# What waits behind the mark is not worth a replay when it is at most this many buckets, all of
# them at most this far behind the mark: a late record that fills a bucket in which the service
# had no rows (it is written late, behind buckets already scored). A replay relearns the whole
# window (DETECTION_REPLAY_MAX_BUCKETS, 25,920 buckets by default: about 50-100 s of CPU per
# service, during which the round is blocked) to learn these in order; leaving them out changes
# what the models learned by at most 30 points of that window (about 0.1 %). So they are marked
# read and counted as skipped history. Thirty buckets is five minutes of default buckets; an hour
# is the ETL's partition and far beyond the lateness of the live path. Real history (a backfill,
# history on demand, a late raw hour) brings hours of buckets, or buckets older than that: it is
# replayed.
LATE_MAX_BUCKETS = 30
LATE_HORIZON_SECONDS = 3600.0


class ServiceLost(Exception):
    """The service's lease is no longer held (with time to spare): nothing more is written."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Configuration:
    """What the settings say, checked once at start (a bad value stops the service with the
    setting's name in the message)."""

    def __init__(self, settings: Settings) -> None:
        self.series: tuple[SeriesSpec, ...] = parse_series(settings.detection_series)
        try:
            self.engine = (
                DecisionEngine.model_validate_json(settings.detection_voting)
                if settings.detection_voting.strip()
                else DecisionEngine()
            )
        except ValueError as exc:
            raise ValueError(f"DETECTION_VOTING is not a valid decision engine: {exc}") from exc
        try:
            self.rules = tuple(parse_rules(settings.detection_rules))
        except ValueError as exc:
            raise ValueError(f"DETECTION_RULES: {exc}") from exc
        names = {s.series for s in self.series}
        unknown = sorted({r.signal for r in self.rules} - names)
        if unknown:
            raise ValueError(
                f"DETECTION_RULES name series not in DETECTION_SERIES: {', '.join(unknown)}"
            )
        self.open_after = settings.detection_open_after
        self.close_after = settings.detection_close_after


class DetectionWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        s3: Any,
        sqs: Any,
        catalog: Any,
        webhook: WebhookTarget | None = None,
        clock: Callable[[], float] = time.time,
        dynamodb: Any | None = None,
    ) -> None:
        self.settings = settings
        self.config = Configuration(settings)
        self.catalog = catalog
        self.sqs = sqs
        self.clock = clock
        self.bucket = resources.models_bucket(settings)
        self.checkpoints = CheckpointStore(s3, self.bucket)
        self.events = EventStore(s3, self.bucket, max_age=EVENTS_MAX_AGE_SECONDS)
        self.outbox = Outbox(s3, self.bucket)
        self.reader = FeatureReader(catalog, self.config.series)
        self.counters = counters()
        self.worker_id = settings.detection_worker_id or default_worker_id()
        self.leases = ServiceLeases(
            dynamodb if dynamodb is not None else aws.client("dynamodb", settings),
            settings.detection_lease_table,
            self.worker_id,
            settings.detection_lease_seconds,
            self.counters,
        )
        self.adopted: dict[str, int] = {}  # service -> fence of the lease it was loaded under
        self.uncommitted: dict[str, int] = {}  # service -> points scored since its checkpoint
        self.webhook = webhook
        if webhook is None and settings.alert_webhook_url:
            self.webhook = WebhookTarget(settings.alert_webhook_url)
        self.ensembles: dict[str, ServiceEnsemble] = {}
        self.marks: dict[str, float] = {}
        self.progress: dict[str, Progress] = {}
        self.pending_since: dict[str, float] = {}  # monotonic time history began to wait
        self.generations: dict[str, int] = {}
        self.last_points: dict[str, dict[str, Any]] = {}
        self.saved_at: dict[str, float] = {}  # monotonic time of the last checkpoint
        self.dirty: set[str] = set()  # scored past their checkpoint
        self.dispatcher: Dispatcher | None = None
        self.started = False
        self.failures = 0
        self.last_error: str | None = None
        self.last_round: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Set by the lease thread when leases come, go or are asked for: the next round starts
        # at once instead of after the interval, so a takeover or a hand-over does not wait.
        self._wake = threading.Event()
        self.leases.on_change = self._wake.set
        self._thread: threading.Thread | None = None
        self._lease_stop = threading.Event()
        self._lease_thread: threading.Thread | None = None
        OWNED_SERVICES.set_function(lambda: len(self.adopted))

    # --- start ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the events; the services come with their leases (``_adopt``)."""
        queue = resources.alert_queues(self.settings).queue
        queue_url = self.sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        anomalies = ensure_anomalies_table(self.catalog, self.bucket)
        targets: dict[str, Any] = {
            "sqs": SqsTarget(self.sqs, queue_url),
            "lake": lambda batch: anomalies.append(rows(batch)),
        }
        if self.webhook is not None:
            targets["webhook"] = self.webhook
        self.dispatcher = Dispatcher(
            self.outbox,
            targets,
            self.settings.alert_send_attempts,
            self.settings.alert_dead_letter_after,
            on_result=self._count_delivery,
        )
        self.events.load()
        self.leases.add_services(self.checkpoints.services())
        self.started = True

    def _load(self, service: str) -> None:
        saved = self.checkpoints.load(service)
        if saved is None:
            self.ensembles.pop(service, None)
            return
        self.ensembles[service] = ServiceEnsemble.from_state(saved.state, self.config.engine)
        self.generations[service] = saved.generation
        if saved.mark is not None:
            self.marks[service] = saved.mark
        width = self.settings.features_bucket_seconds
        self.progress[service] = progress = Progress.restore(saved.mark, saved.progress, width)
        if progress.pending:
            self.pending_since[service] = time.monotonic()
        log.info(
            "%s: resumed from checkpoint generation %d (mark %s, %d bytes)",
            service,
            saved.generation,
            iso(saved.mark),
            saved.size_bytes,
        )

    def _new_ensemble(self, service: str) -> ServiceEnsemble:
        return ServiceEnsemble(
            service,
            [s.series for s in self.config.series],
            engine=self.config.engine,
            rules=self.config.rules,
            open_after=self.config.open_after,
            close_after=self.config.close_after,
        )

    # --- ownership ------------------------------------------------------------------------------
    def _sync_ownership(self) -> list[str]:
        """Drop the services whose lease is gone, load those newly held; the services to score."""
        owned = self.leases.owned()
        for service, fence in list(self.adopted.items()):
            if owned.get(service) != fence:
                self._drop(service)
        new = sorted(s for s in owned if s not in self.adopted)
        pending = self.outbox.pending() if new else []
        for service in new:
            self._adopt(service, owned[service], [e for e in pending if e.service == service])
        return sorted(self.adopted)

    def _adopt(self, service: str, fence: int, pending: list[Any]) -> None:
        self._drop(service)
        self._load(service)
        for entry in pending:
            if entry.generation > self.generations.get(service, 0):
                # Its checkpoint was never written: rescoring recreates it.
                self.outbox.delete(entry)
        self.adopted[service] = fence
        log.info("%s: taken over (lease fence %d)", service, fence)

    def _drop(self, service: str) -> None:
        """Forget a service this process no longer holds (its next holder loads the checkpoint)."""
        self.adopted.pop(service, None)
        self._discard_uncommitted(service)
        self.ensembles.pop(service, None)
        self.marks.pop(service, None)
        self.progress.pop(service, None)
        self.pending_since.pop(service, None)
        self.generations.pop(service, None)
        self.saved_at.pop(service, None)
        self.dirty.discard(service)
        with self._lock:
            self.last_points.pop(service, None)

    def _discard_uncommitted(self, service: str) -> None:
        lost = self.uncommitted.pop(service, 0)
        if lost:
            self.counters.inc("points_discarded", lost)

    def _check_held(self, service: str) -> None:
        fence = self.adopted.get(service)
        if fence is None or not self.leases.ready(service, fence):
            raise ServiceLost(f"{service}: lease no longer held; nothing written")

    def _hand_over(self) -> None:
        """Services another process asked for: a last checkpoint, then the lease goes."""
        for service in self.leases.wanted():
            if service in self.adopted and service in self.dirty:
                try:
                    self._commit(service, [])
                except Exception as exc:
                    log.warning("%s: checkpoint before hand-over failed: %s", service, exc)
            self.leases.release(service)
            self._drop(service)

    # --- one round ------------------------------------------------------------------------------
    def run_once(self) -> None:
        if not self.started:
            self.start()
        if self._lease_thread is None:
            self.leases.tick()
        self.leases.add_services(self.reader.discover())
        self._hand_over()
        owned = self._sync_ownership()
        increment = None
        if owned:
            since = {s: self.progress[s].sequence if s in self.progress else None for s in owned}
            increment = self.reader.read(since)
        for service in owned:
            if increment is None or increment.snapshot_id is None or service not in self.adopted:
                continue
            points = increment.points.get(service, [])
            self.counters.inc("buckets_read", len(points))
            try:
                self._score(service, points, increment.snapshot_id, increment.sequence)
            except ServiceLost as exc:
                log.warning("%s", exc)
                self._drop(service)
            except CheckpointConflict as exc:
                self.counters.inc("checkpoint_conflicts")
                log.error("%s", exc)
                self._forget(service)
            except Exception:
                self._forget(service)
                raise
        self.deliver()
        self.events.refresh()
        self._update_gauges()

    def _forget(self, service: str) -> None:
        """Drop in-memory progress that no checkpoint holds; the next round reloads it."""
        self._discard_uncommitted(service)
        self.ensembles.pop(service, None)
        self.marks.pop(service, None)
        self.progress.pop(service, None)
        self.pending_since.pop(service, None)
        self.generations.pop(service, None)
        self.dirty.discard(service)
        self._load(service)

    def _score(
        self, service: str, points: list[Point], snapshot_id: int, sequence: int | None
    ) -> None:
        progress = self.progress.setdefault(service, Progress())
        width = self.settings.features_bucket_seconds
        mark = self.marks.get(service)
        fresh = [p for p in points if p.timestamp not in progress.seen]
        behind = [p for p in fresh if mark is not None and p.timestamp < mark]
        live = [p for p in fresh if mark is None or p.timestamp > mark]
        progress.sequence = sequence
        for point in behind:
            progress.seen.add(point.timestamp, point.timestamp + width)
            progress.pending.add(point.timestamp, point.timestamp + width)
        history: list[dict[str, Any]] = []
        if behind:
            self.dirty.add(service)  # the buckets read and what waits: in the next checkpoint
            if mark is not None and self._late_only(progress.pending, mark, width):
                self._skip_late(service, progress, width)
            else:
                self.pending_since.setdefault(service, time.monotonic())
        waited = time.monotonic() - self.pending_since.get(service, time.monotonic())
        replayed = bool(progress.pending) and (not behind or waited >= REPLAY_WAIT_SECONDS)
        if replayed:
            history = self._replay(service, progress, snapshot_id)
        if not live and not replayed:
            return
        ensemble = self.ensembles.get(service) or self._new_ensemble(service)
        self.ensembles[service] = ensemble
        changes = []
        last: dict[str, Any] | None = None
        scored = 0
        for point in live:
            progress.seen.add(point.timestamp, point.timestamp + width)
            result = ensemble.update_known(point.timestamp, point.values)
            if result is None:
                continue
            scored += 1
            changes.extend(result.changes)
            last = {
                "timestamp": iso(point.timestamp),
                "score": result.decision.score,
                "anomalous": result.decision.anomalous,
                "voters": list(result.decision.voters),
                "scores": {s: r.decision.score for s, r in result.signals.items()},
            }
        with self._lock:
            if last is not None:
                self.last_points[service] = last
        self.counters.inc("points_scored", scored)
        self.uncommitted[service] = self.uncommitted.get(service, 0) + scored
        if live:
            self.marks[service] = live[-1].timestamp
        if not changes and not replayed and not self._checkpoint_due(service):
            # Scored in memory only: a crash before the next checkpoint scores these buckets
            # again from the last one (no transition happened in them, so none is lost).
            self.dirty.add(service)
            return
        # A replay is checkpointed at once: it is the costliest work to do again.
        self._commit(service, changes, history)

    @staticmethod
    def _late_only(pending: Coverage, mark: float, width: float) -> bool:
        """Whether all that waits is a few buckets just behind the mark (``LATE_MAX_BUCKETS``)."""
        first = pending.first()
        return (
            first is not None
            and first >= mark - LATE_HORIZON_SECONDS
            and pending.buckets(width) <= LATE_MAX_BUCKETS
        )

    def _skip_late(self, service: str, progress: Progress, width: float) -> None:
        """Late buckets are read (in ``seen``) and counted, not learned: no replay for them."""
        skipped = progress.pending.buckets(width)
        progress.pending = Coverage()
        self.pending_since.pop(service, None)
        self.counters.inc("history_skipped", skipped)
        log.info(
            "%s: %d late buckets behind the mark counted as skipped, not replayed", service, skipped
        )

    def _replay(self, service: str, progress: Progress, snapshot_id: int) -> list[dict[str, Any]]:
        """Rebuild the service's detectors from its buckets up to the mark, in time order, so
        that the history waiting in ``progress.pending`` is learned as if it had come first.

        The event tracker stays the live one (an open event goes on and is not alerted again).
        Returns the documents of the events the replay closed whose buckets are all new history:
        recorded, never alerted."""
        width = self.settings.features_bucket_seconds
        mark = self.marks[service]
        window = self.settings.detection_replay_max_buckets
        began = time.monotonic()
        points = self.reader.read_range(snapshot_id, service, mark - (window - 1) * width, mark)
        current = self.ensembles.get(service) or self._new_ensemble(service)
        rebuilt = ServiceEnsemble(
            service,
            current.signals,
            current.signal_types,
            engine=self.config.engine,
            rules=self.config.rules,
            open_after=current.tracker.open_after,
            close_after=current.tracker.close_after,
        )
        closed = []
        fed = 0
        for point in points:
            result = rebuilt.update_known(point.timestamp, point.values)
            if result is None:
                continue
            fed += 1
            closed += [c.event for c in result.changes if c.action == "close"]
        learned = sum(1 for p in points if p.timestamp in progress.pending)
        skipped = max(0, progress.pending.buckets(width) - learned)
        history = []
        for event in closed:
            span = [p.timestamp for p in points if event.start <= p.timestamp <= event.end]
            if all(t in progress.pending for t in span) and not self._known_event(event.event_id):
                history.append(event_document(service, event.to_dict(), history=True))
        rebuilt.tracker = current.tracker
        self.ensembles[service] = rebuilt
        for point in points:
            progress.seen.add(point.timestamp, point.timestamp + width)
        progress.pending = Coverage()
        self.pending_since.pop(service, None)
        self.counters.inc("replays")
        self.counters.inc("points_replayed", fed)
        self.counters.inc("points_scored", learned)
        self.counters.inc("history_skipped", skipped)
        self.uncommitted[service] = self.uncommitted.get(service, 0) + learned
        elapsed = time.monotonic() - began
        log.info(
            "%s: replayed %d buckets up to %s in %.1f s (%d new, %d older than the window "
            "not learned, %d history events)",
            service,
            fed,
            iso(mark),
            elapsed,
            learned,
            skipped,
            len(history),
        )
        return history

    def _known_event(self, event_id: str) -> bool:
        try:
            self.events.get(event_id)
        except EventNotFound:
            return False
        return True

    def _checkpoint_due(self, service: str) -> bool:
        if service not in self.generations:
            return True
        saved = self.saved_at.get(service)
        every = self.settings.detection_checkpoint_seconds
        return saved is None or time.monotonic() - saved >= every

    def _commit(
        self, service: str, changes: list[Any], history: list[dict[str, Any]] | None = None
    ) -> None:
        """Events and outbox entries, then the checkpoint that makes them count. ``history``:
        events found by a replay, recorded without an alert."""
        ensemble = self.ensembles.get(service) or self._new_ensemble(service)
        self.ensembles[service] = ensemble
        mark = self.marks.get(service)
        progress = self.progress.setdefault(service, Progress())
        generation = self.generations.get(service, 0) + 1
        documents = []
        self._check_held(service)
        for document in history or ():
            self.events.put(document)
        for change in changes:
            document = event_document(service, change.event.to_dict())
            documents.append((change.action, document))
            self.events.put(document)
            for target in self.dispatcher.targets if self.dispatcher else ():
                self.outbox.put(target, service, generation, message(change.action, document))
        self._check_held(service)
        self.checkpoints.save(service, generation, mark, ensemble.state(), progress.to_dict())
        self.generations[service] = generation
        self.saved_at[service] = time.monotonic()
        self.dirty.discard(service)
        self.uncommitted.pop(service, None)
        self.counters.inc("checkpoints_written")
        for action, _ in documents:
            name = {"open": "events_opened", "update": "events_updated", "close": "events_closed"}
            self.counters.inc(name[action])

    def flush(self) -> None:
        """Checkpoint every service scored since its last checkpoint (a clean stop)."""
        for service in sorted(self.dirty & self.adopted.keys()):
            try:
                self._commit(service, [])
            except Exception:
                log.exception(
                    "%s: final checkpoint failed; a restart scores again from the last", service
                )

    def deliver(self) -> dict[str, RoundResult]:
        if self.dispatcher is None:
            return {}
        # Only the services held now: another process delivers its own.
        held = {s for s, fence in self.adopted.items() if self.leases.ready(s, fence)}
        due = [
            e
            for e in self.outbox.pending()
            if e.service in held and e.generation <= self.generations.get(e.service, 0)
        ]
        OUTBOX_PENDING.set(len(due))
        if not due:
            return {}
        results = self.dispatcher.deliver(due)
        OUTBOX_PENDING.set(sum(r.failed - r.dead_lettered for r in results.values()))
        return results

    def _count_delivery(self, target: str, result: RoundResult) -> None:
        self.counters.inc("alerts_sent", result.sent)
        self.counters.inc("alerts_failed", result.failed)
        self.counters.inc("alerts_dead_lettered", result.dead_lettered)

    def _update_gauges(self) -> None:
        OPEN_EVENTS.set(self.events.counts()["open"])
        lag = self.lag()
        if lag is not None:
            LAG.set(lag)

    def lag(self) -> float | None:
        marks = list(self.marks.values())
        if not marks:
            return None
        oldest = min(marks)
        return max(0.0, self.clock() - (oldest + self.settings.features_bucket_seconds))

    # --- the loop -------------------------------------------------------------------------------
    def run_forever(self) -> None:
        interval = self.settings.detection_interval_seconds
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.run_once()
                self.failures = 0
                self.last_error = None
                self.last_round = self.clock()
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                self.counters.inc("tick_failures")
                log.exception("detection round failed (retried in %.1f s)", interval)
            self._wake.wait(max(0.0, interval - (time.monotonic() - began)))
            self._wake.clear()

    def start_thread(self) -> None:
        self._lease_thread = threading.Thread(
            target=self.leases.run, args=(self._lease_stop,), name="detection-leases", daemon=True
        )
        self._lease_thread.start()
        if self.settings.detection_wake_poll_seconds > 0:
            watch = FeaturesWatch(
                aws.client("glue", self.settings),
                self._wake.set,
                self.settings.detection_wake_poll_seconds,
                counters=self.counters,
            )
            threading.Thread(
                target=watch.run, args=(self._lease_stop,), name="detection-wake", daemon=True
            ).start()
        self._thread = threading.Thread(target=self.run_forever, name="detection", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                # The leases expire instead: the services are taken over from their checkpoints.
                log.error("the detection round did not end in %.0f s; no final checkpoint", timeout)
                self._lease_stop.set()
                return
        self.flush()
        self._lease_stop.set()
        if self._lease_thread is not None:
            self._lease_thread.join(timeout)
        # Handed back at once: the other processes take the services over without waiting.
        self.leases.release_all()

    # --- reporting ------------------------------------------------------------------------------
    def healthy(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {
            "started": self.started,
            "services": len(self.marks),
            "worker_id": self.worker_id,
            "owned_services": sorted(self.adopted),
            "lag_seconds": self.lag(),
            "last_error": self.last_error,
        }
        leases_ok = self.leases.healthy()
        if not leases_ok:
            details["lease_error"] = self.leases.last_error or "lease coordination has not run yet"
        return self.failures < UNHEALTHY_AFTER_FAILURES and leases_ok, details

    def status(self) -> dict[str, Any]:
        with self._lock:
            last = dict(self.last_points)
        # Copies: the detection thread changes these while a request reads them.
        marks, generations = dict(self.marks), dict(self.generations)
        width = self.settings.features_bucket_seconds
        waiting = {s: p.pending.buckets(width) for s, p in list(self.progress.items())}
        return {
            "started": self.started,
            "worker_id": self.worker_id,
            "owned_services": sorted(self.adopted),
            "leases": {
                "table": self.settings.detection_lease_table,
                "lease_seconds": self.settings.detection_lease_seconds,
                "live_processes": self.leases.live_processes,
                "services_total": self.leases.services_total,
                "handing_over": self.leases.wanted(),
                "last_error": self.leases.last_error,
            },
            "series": [str(s) for s in self.config.series],
            "interval_seconds": self.settings.detection_interval_seconds,
            "alert_queue": resources.alert_queues(self.settings).queue,
            "models_bucket": self.bucket,
            "lag_seconds": self.lag(),
            "last_round": iso(self.last_round),
            "last_error": self.last_error,
            "counters": self.counters.snapshot(),
            "events": self.events.counts(),
            "services": {
                service: {
                    "mark": iso(marks.get(service)),
                    "generation": generations.get(service, 0),
                    "history_waiting": waiting.get(service, 0),
                    "last_point": last.get(service),
                }
                for service in sorted(set(marks) | set(last))
            },
        }

"""Continuous generation: one background thread producing ``logs_per_interval`` records every
``interval_seconds`` through Log Synthesis, folding open anomaly windows into its records.

Ticks follow a monotonic schedule. When a synthesis call takes longer than the interval, the
missed ticks are produced by the next calls, at most ``MAX_CATCHUP_TICKS`` at a time (merged
into one call per synthesis bound when unseeded, tick by tick when seeded); a backlog
beyond ``MAX_BACKLOG_TICKS`` is dropped, counted as skipped records and reported. The generator
counts as falling behind (``can_keep_up`` false) while it is more than ``BEHIND_SECONDS`` (or two
intervals) behind schedule, and for ``BEHIND_MEMORY_SECONDS`` after.

With a seed, tick n's synthesis requests and random anomaly choices depend only on the seed and
n, so the same request produces the same sequence of synthesis calls (timestamps aside).

Up to ``MAX_TICKS_IN_FLIGHT`` ticks' synthesis calls run at once: a call spends most of its
time waiting for ingestion and Kinesis to acknowledge its records, so one call at a time caps
the rate at count / round trip however idle the machine is. Ticks are still planned in order
on the generator thread (anomaly draws, windows, seeds), only their calls overlap; the
measured rate counts records when their call returns, and a run ends only after its calls
have returned. When every slot is busy the next tick waits and shows as backlog.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stages.orchestrator import metrics
from stages.orchestrator.clients import (
    SynthesisClient,
    SynthesisRequest,
    context_for,
    derive_seed,
    split_count,
)
from stages.orchestrator.errors import GeneratorAlreadyRunning
from stages.orchestrator.ground_truth import GroundTruth, Window, whole_ms
from stages.orchestrator.pacing import RateMeter, Schedule
from stages.orchestrator.scenario_catalogue import Scenario
from stages.orchestrator.tally import Tally, produce

MAX_CATCHUP_TICKS = 10
MAX_BACKLOG_TICKS = 100
BEHIND_SECONDS = 1.0
BEHIND_MEMORY_SECONDS = 10.0
STOP_JOIN_SECONDS = 30.0
MAX_TICKS_IN_FLIGHT = 3
# Windows the generator folds into its records; execution windows are produced by executions.
FOLDED_SOURCES = ("continuous", "trigger")

# (scenario, intensity, duration, source, rng, start) -> the opened window, or None when
# too many windows are open already
AnomalyStarter = Callable[[Scenario, float, float, str, random.Random, datetime], Window | None]


@dataclass(frozen=True)
class ContinuousConfig:
    interval_seconds: float
    logs_per_interval: int
    duration_seconds: float | None = None
    anomaly_rate: float = 0.0
    seed: int | None = None
    services: tuple[str, ...] | None = None
    log_types: tuple[str, ...] | None = None

    @property
    def requested_rate(self) -> float:
        return self.logs_per_interval / self.interval_seconds

    @property
    def total_ticks(self) -> int | None:
        if self.duration_seconds is None:
            return None
        # A tick due exactly at the end belongs to the next run, not this one.
        return max(1, -int(-self.duration_seconds // self.interval_seconds))


@dataclass(frozen=True)
class GeneratorStats:
    """The generator's last or current run: its configuration, requested against produced,
    backlog and anomalies. With no run yet, only the defaults."""

    running: bool = False
    started_at: datetime | None = None
    can_keep_up: bool = True
    elapsed_seconds: float = 0.0
    config: ContinuousConfig | None = None
    requested_rate: float = 0.0
    measured_rate: float = 0.0
    measured_rate_recent: float = 0.0
    records_requested: int = 0
    records_produced: int = 0
    records_failed: int = 0
    records_skipped: int = 0
    synthesis_calls: int = 0
    synthesis_retries: int = 0
    last_error: str | None = None
    ticks: int = 0
    ticks_behind: int = 0
    max_ticks_behind: int = 0
    ticks_skipped: int = 0
    anomalies_started: int = 0
    anomalies_skipped: int = 0
    active_anomalies: tuple[Window, ...] = ()


def anomalous_share(intensity: float) -> float:
    """Share of a window's records that carry the anomaly: 10 % at intensity 0, 50 % at 100."""
    return round(0.1 + 0.4 * intensity / 100, 3)


def plan_requests(
    config: ContinuousConfig,
    tick: int,
    ticks: int,
    timestamp: datetime,
    windows: Sequence[Window],
    known: Sequence[Window] = (),
) -> list[SynthesisRequest]:
    """The synthesis calls for ``ticks`` ticks starting at ``tick``.

    The records are split evenly between background traffic (the configured services) and one
    part per folded window (``windows``). A window's part comes from the window's services with
    the log types synthesis picks for the anomaly, so its anomalous records exist even when the
    configured services or log types leave the target out. Every call also carries the other
    ``known`` windows overlapping the ticks, so records in their scope are labelled."""
    count = ticks * config.logs_per_interval
    owners: list[Window | None] = [None, *windows]
    share, extra = divmod(count, len(owners))
    requests = []
    for part, window in enumerate(owners):
        part_count = share + (1 if part < extra else 0)
        others = tuple(context_for(w) for w in known if window is None or w.id != window.id)
        for chunk, chunk_count in enumerate(split_count(part_count)):
            seed = None if config.seed is None else derive_seed(config.seed, tick, part, chunk)
            requests.append(
                SynthesisRequest(
                    count=chunk_count,
                    seed=seed,
                    timestamp=timestamp,
                    spread_seconds=ticks * config.interval_seconds,
                    services=window.services if window else config.services,
                    log_types=None if window else config.log_types,
                    anomaly=context_for(window) if window else None,
                    anomalous_share=anomalous_share(window.intensity) if window else None,
                    windows=others,
                )
            )
    return requests


def tick_groups(seeded: bool, first: int, ticks: int) -> list[tuple[int, int]]:
    """How ``ticks`` due ticks are produced, as (first tick, tick count) calls. Unseeded, they
    are merged into one call (fewer round trips while catching up); seeded, each tick keeps its
    own calls, seeds and anomaly draws, so running behind does not change the sequence."""
    if not seeded:
        return [(first, ticks)]
    return [(tick, 1) for tick in range(first, first + ticks)]


@dataclass
class ContinuousRun:
    config: ContinuousConfig
    started_at: datetime
    start_mono: float
    rng: random.Random
    stop: threading.Event = field(default_factory=threading.Event)
    tally: Tally = field(default_factory=Tally)
    meter: RateMeter = field(default_factory=RateMeter)
    ended_mono: float | None = None
    ticks: int = 0
    backlog_ticks: int = 0
    max_backlog_ticks: int = 0
    ticks_skipped: int = 0
    records_skipped: int = 0
    last_behind_mono: float | None = None
    anomalies_started: int = 0
    anomalies_skipped: int = 0  # drawn while too many windows were open
    windows_opened: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None
    slots: threading.Semaphore = field(
        default_factory=lambda: threading.Semaphore(MAX_TICKS_IN_FLIGHT)
    )
    # first tick of each call still running -> when that tick was due (monotonic)
    in_flight_due: dict[int, float] = field(default_factory=dict)
    in_flight_lock: threading.Lock = field(default_factory=threading.Lock)
    calls: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            MAX_TICKS_IN_FLIGHT, thread_name_prefix="continuous-call"
        )
    )

    @property
    def running(self) -> bool:
        return self.ended_mono is None

    def elapsed(self, now: float) -> float:
        return (self.ended_mono or now) - self.start_mono

    def can_keep_up(self, now: float) -> bool:
        if self.last_behind_mono is None:
            return True
        return self.running and now - self.last_behind_mono > BEHIND_MEMORY_SECONDS


class ContinuousGenerator:
    """At most one run at a time; ``start`` while one runs is a GeneratorAlreadyRunning."""

    def __init__(
        self,
        synthesis: SynthesisClient,
        ground_truth: GroundTruth,
        scenarios: Sequence[Scenario],
        start_anomaly: AnomalyStarter,
    ) -> None:
        self._synthesis = synthesis
        self._ground_truth = ground_truth
        self._scenarios = sorted(scenarios, key=lambda s: s.id)
        self._start_anomaly = start_anomaly
        self._lock = threading.Lock()
        self._run: ContinuousRun | None = None

    @property
    def running(self) -> bool:
        run = self._run
        return run is not None and run.running

    def start(self, config: ContinuousConfig) -> GeneratorStats:
        with self._lock:
            if self.running:
                raise GeneratorAlreadyRunning()
            run = ContinuousRun(
                config=config,
                # whole milliseconds, so seeded runs' windows start exactly on their ticks
                started_at=whole_ms(datetime.now(UTC)),
                start_mono=time.monotonic(),
                rng=random.Random(config.seed),
            )
            run.thread = threading.Thread(
                target=self._loop, args=(run,), name="continuous-generator", daemon=True
            )
            self._run = run
            metrics.CONTINUOUS_RUNNING.set(1)
            run.thread.start()
        return self.stats()

    def stop(self) -> GeneratorStats:
        run = self._run
        if run is not None and run.thread is not None:
            run.stop.set()
            run.thread.join(STOP_JOIN_SECONDS)
        return self.stats()

    def stats(self) -> GeneratorStats:
        run = self._run
        if run is None:
            return GeneratorStats()
        return run_stats(run, self._ground_truth, time.monotonic())

    # --- the generator thread -----------------------------------------------------------------
    def _loop(self, run: ContinuousRun) -> None:
        config = run.config
        schedule = Schedule(config.interval_seconds, run.start_mono, config.total_ticks)
        try:
            while not schedule.finished():
                if run.stop.wait(max(0.0, schedule.next_due() - time.monotonic())):
                    break
                self._tick(run, schedule)
            if config.duration_seconds is not None and not run.stop.is_set():
                run.stop.wait(max(0.0, run.start_mono + config.duration_seconds - time.monotonic()))
        finally:
            # The run's records are those of every call it started: wait for the last ones.
            run.calls.shutdown(wait=True)
            run.ended_mono = time.monotonic()
            self._close_folded_windows(run)
            metrics.CONTINUOUS_RUNNING.set(0)

    def _tick(self, run: ContinuousRun, schedule: Schedule) -> None:
        now = time.monotonic()
        backlog = schedule.due_count(now)
        if backlog > MAX_BACKLOG_TICKS:
            self._skip(run, schedule, backlog - MAX_CATCHUP_TICKS)
            backlog = MAX_CATCHUP_TICKS
        take = min(backlog, MAX_CATCHUP_TICKS)
        config = run.config
        for first, ticks in tick_groups(config.seed is not None, schedule.done, take):
            if run.stop.is_set():
                break
            at = run.started_at + timedelta(seconds=first * config.interval_seconds)
            for tick in range(first, first + ticks):
                self._maybe_start_anomaly(
                    run, at + timedelta(seconds=(tick - first) * config.interval_seconds)
                )
            self._ground_truth.close_expired()
            until = at + timedelta(seconds=ticks * config.interval_seconds)
            known = self._ground_truth.plan(at, until)
            folded = [w for w in known if w.is_open and w.source in FOLDED_SOURCES]
            requests = plan_requests(config, first, ticks, at, folded, known)
            if not self._take_slot(run, schedule):
                break
            with run.in_flight_lock:
                run.in_flight_due[first] = schedule.next_due()
            run.calls.submit(self._produce, run, first, requests)
            schedule.advance(ticks)
            run.ticks += ticks
        self._note_backlog(run, schedule)

    def _take_slot(self, run: ContinuousRun, schedule: Schedule) -> bool:
        """Wait for a free call slot; False when the run is stopped meanwhile."""
        while not run.stop.is_set():
            if run.slots.acquire(timeout=0.05):
                return True
            self._note_backlog(run, schedule)  # the stats show the wait while it lasts
        return False

    def _produce(self, run: ContinuousRun, first: int, requests: list[SynthesisRequest]) -> None:
        try:
            produce(
                self._synthesis, requests,
                stop=run.stop, tally=run.tally, source="continuous", meter=run.meter,
            )  # fmt: skip
        finally:
            with run.in_flight_lock:
                del run.in_flight_due[first]
            run.slots.release()

    def _note_backlog(self, run: ContinuousRun, schedule: Schedule) -> None:
        now = time.monotonic()
        run.backlog_ticks = schedule.due_count(now)
        run.max_backlog_ticks = max(run.max_backlog_ticks, run.backlog_ticks)
        limit = max(BEHIND_SECONDS, 2 * run.config.interval_seconds)
        with run.in_flight_lock:
            oldest_due = min(run.in_flight_due.values(), default=now)
        # Behind when ticks wait to be sent, or when a sent tick's records are still not
        # produced that long after it was due (its call is slow, not the schedule).
        lag = max(run.backlog_ticks * run.config.interval_seconds, now - oldest_due)
        if lag > limit:
            run.last_behind_mono = now

    def _skip(self, run: ContinuousRun, schedule: Schedule, ticks: int) -> None:
        schedule.advance(ticks)
        run.ticks_skipped += ticks
        run.records_skipped += ticks * run.config.logs_per_interval
        run.last_behind_mono = time.monotonic()
        metrics.RECORDS_SKIPPED.labels("continuous").inc(ticks * run.config.logs_per_interval)

    def _maybe_start_anomaly(self, run: ContinuousRun, due: datetime) -> None:
        """One draw per tick, always, so a seeded run makes the same choices at the same ticks;
        the window starts with the tick's records (``due``). Starting one calls the State
        Manager from this thread; a slow one shows as backlog."""
        draw = run.rng.random()
        pick = run.rng.randrange(len(self._scenarios)) if self._scenarios else 0
        if not self._scenarios or draw >= run.config.anomaly_rate:
            return
        scenario = self._scenarios[pick]
        window = self._start_anomaly(
            scenario,
            float(scenario.default_intensity),
            float(scenario.default_duration_seconds),
            "continuous",
            run.rng,
            due,
        )
        if window is None:
            run.anomalies_skipped += 1
            metrics.ANOMALIES_SKIPPED.inc()
            return
        run.anomalies_started += 1
        run.windows_opened.append(window.id)

    def _close_folded_windows(self, run: ContinuousRun) -> None:
        """Records stop with the generator, so the windows it was feeding end now too."""
        for window in self._ground_truth.active():
            if window.source in FOLDED_SOURCES:
                self._ground_truth.close_window(window.id)


def run_stats(run: ContinuousRun, ground_truth: GroundTruth, now: float) -> GeneratorStats:
    elapsed = run.elapsed(now)
    config = run.config
    return GeneratorStats(
        running=run.running,
        started_at=run.started_at,
        can_keep_up=run.can_keep_up(now),
        elapsed_seconds=round(elapsed, 3),
        config=config,
        requested_rate=round(config.requested_rate, 3),
        measured_rate=round(run.tally.produced / elapsed, 3) if elapsed > 0 else 0.0,
        measured_rate_recent=round(run.meter.recent_rate(run.start_mono, run.ended_mono or now), 3),
        records_requested=run.tally.requested,
        records_produced=run.tally.produced,
        records_failed=run.tally.failed,
        records_skipped=run.records_skipped,
        synthesis_calls=run.tally.calls,
        synthesis_retries=run.tally.retries,
        last_error=run.tally.last_error,
        ticks=run.ticks,
        ticks_behind=run.backlog_ticks,
        max_ticks_behind=run.max_backlog_ticks,
        ticks_skipped=run.ticks_skipped,
        anomalies_started=run.anomalies_started,
        anomalies_skipped=run.anomalies_skipped,
        # Every open window, executions' included: what an operator wants to see right now.
        active_anomalies=tuple(ground_truth.active()),
    )

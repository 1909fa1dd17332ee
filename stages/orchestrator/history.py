"""History on demand: labelled telemetry for a past time range, through the real path.

A history run cuts [start, end) into chunks of whole steps (``resolution_seconds``) and asks Log
Synthesis, chunk after chunk, for
- the metric series grid: every metric of every chosen service, one value per step, with the
  daily cycle, a week-end change and a linear trend (``series`` of a synthesize request), and
  ``logs_apm_per_step`` logs and spans per service per step around it;
- for each anomaly window overlapping the chunk, the same number of logs and spans again over
  the overlap, from the window's services, a share of them carrying the anomaly (as the live
  generator folds a window in).
Every call carries every window overlapping its chunk, so synthesis labels each record in a
window's scope with it, metrics included (their values get the scenario's overlay).

The plan is a pure function of the request: with a seed, the windows (scenario, start, end,
intensity) and every call (its count, grid and seed) are the same each time. Windows are recorded
in the ground truth (``GroundTruth.record_window``, source ``history:<id>``) just before the first
chunk that overlaps them is sent.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stages.common import estate
from stages.common.estate import series_metrics
from stages.orchestrator.clients import (
    MAX_SYNTHESIS_COUNT,
    SynthesisClient,
    SynthesisRequest,
    context_for,
    derive_seed,
)
from stages.orchestrator.continuous import anomalous_share
from stages.orchestrator.errors import HistoryAlreadyRunning, HistoryNotFound
from stages.orchestrator.ground_truth import Window
from stages.orchestrator.scenario_catalogue import Scenario
from stages.orchestrator.tally import Tally

MAX_ERRORS_KEPT = 20
MAX_RUNS_KEPT = 20
# Gap between two drawn windows, beyond the exponential draw, so that windows never touch.
MIN_GAP_SECONDS = 60.0


@dataclass(frozen=True)
class ScheduledWindow:
    scenario_id: str
    start: datetime
    duration_seconds: float | None = None
    intensity: float | None = None


@dataclass(frozen=True)
class HistoryConfig:
    start: datetime
    end: datetime
    seed: int
    resolution_seconds: float = 10.0
    services: tuple[str, ...] = estate.SERVICE_NAMES
    metrics: tuple[str, ...] | None = None
    logs_apm_per_step: int = 2
    rate_per_day: float = 0.0
    schedule: tuple[ScheduledWindow, ...] = ()
    normal_only_ranges: tuple[tuple[datetime, datetime], ...] = ()
    trend_per_day: float = 0.01
    weekly_amplitude: float = estate.WEEKLY_AMPLITUDE

    @property
    def steps(self) -> int:
        return math.ceil((self.end - self.start).total_seconds() / self.resolution_seconds)

    def series_count(self) -> int:
        return sum(len(series_metrics(s, self.metrics)) for s in self.services)


@dataclass(frozen=True)
class PlannedWindow:
    scenario: Scenario
    start: datetime
    end: datetime
    intensity: float


@dataclass(frozen=True)
class Chunk:
    index: int
    start: datetime
    steps: int
    resolution_seconds: float

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.steps * self.resolution_seconds)


# --- the plan (pure) ------------------------------------------------------------------------


def eligible(scenarios: Sequence[Scenario], services: Sequence[str]) -> list[Scenario]:
    """Scenarios whose primary service is among the history's, so their metrics are on the
    grid; sorted by id, so a seed picks the same ones whatever the catalogue's order."""
    wanted = set(services)
    return sorted((s for s in scenarios if s.target.primary_service in wanted), key=lambda s: s.id)


def _in_normal_only(config: HistoryConfig, start: datetime, end: datetime) -> bool:
    return any(start < r_end and r_start < end for r_start, r_end in config.normal_only_ranges)


def plan_windows(
    config: HistoryConfig, catalogue: Callable[[str], Scenario], scenarios: Sequence[Scenario]
) -> list[PlannedWindow]:
    """The scheduled windows as given, or windows drawn at ``rate_per_day`` (exponential gaps
    from the seed, scenario drawn among ``eligible`` ones, its default duration and intensity),
    never overlapping each other, a normal-only range or the range's ends."""
    planned = [
        PlannedWindow(
            scenario=(scenario := catalogue(item.scenario_id)),
            start=item.start,
            end=item.start
            + timedelta(seconds=item.duration_seconds or scenario.default_duration_seconds),
            intensity=float(
                scenario.default_intensity if item.intensity is None else item.intensity
            ),
        )
        for item in config.schedule
    ]
    if config.rate_per_day <= 0:
        return sorted(planned, key=lambda w: w.start)
    rng = random.Random(derive_seed(config.seed, "history-windows"))
    choices = eligible(scenarios, config.services)
    mean_gap = 86_400.0 / config.rate_per_day
    moment = config.start
    while choices:
        moment += timedelta(seconds=rng.expovariate(1.0 / mean_gap))
        scenario = choices[rng.randrange(len(choices))]
        end = moment + timedelta(seconds=scenario.default_duration_seconds)
        if end > config.end:
            break
        if not _in_normal_only(config, moment, end):
            planned.append(PlannedWindow(scenario, moment, end, float(scenario.default_intensity)))
        moment = end + timedelta(seconds=MIN_GAP_SECONDS)
    return sorted(planned, key=lambda w: w.start)


def per_step_records(config: HistoryConfig) -> int:
    return config.series_count() + len(config.services) * config.logs_apm_per_step


def plan_chunks(config: HistoryConfig) -> list[Chunk]:
    """Whole steps, as many per chunk as one synthesis call may make (at least one, at most a
    day, the bound of a call's spread)."""
    per_step = max(1, per_step_records(config))
    per_chunk = max(1, MAX_SYNTHESIS_COUNT // per_step)
    per_chunk = min(per_chunk, max(1, int(86_400 // config.resolution_seconds)))
    chunks = []
    for index, first in enumerate(range(0, config.steps, per_chunk)):
        steps = min(per_chunk, config.steps - first)
        start = config.start + timedelta(seconds=first * config.resolution_seconds)
        chunks.append(Chunk(index, start, steps, config.resolution_seconds))
    return chunks


# Logs and spans around the grid; synthesis mixes them about 7:1.
KINDS = ("log", "apm")


def chunk_requests(
    config: HistoryConfig, chunk: Chunk, windows: Sequence[Window]
) -> list[SynthesisRequest]:
    """The synthesis calls of one chunk; ``windows`` are the recorded windows overlapping it."""
    spread = (min(chunk.end, config.end) - chunk.start).total_seconds()
    contexts = tuple(context_for(w) for w in windows)
    series = {
        "step_seconds": config.resolution_seconds,
        "trend_origin": config.start.isoformat(),
        "trend_per_day": config.trend_per_day,
        "weekly_amplitude": config.weekly_amplitude,
    }
    if config.metrics is not None:
        series["metrics"] = list(config.metrics)
    requests = [
        SynthesisRequest(
            count=chunk.steps * len(config.services) * config.logs_apm_per_step,
            seed=derive_seed(config.seed, "history", chunk.index, 0),
            timestamp=chunk.start,
            spread_seconds=spread,
            services=config.services,
            windows=contexts,
            kinds=KINDS,
            series=series,
            grid_records=chunk.steps * config.series_count(),
        )
    ]
    for part, window in enumerate(windows, start=1):
        start, end, count = window_part(config, chunk, window.start, window.last_end)
        if count <= 0:
            continue
        requests.append(
            SynthesisRequest(
                count=count,
                seed=derive_seed(config.seed, "history", chunk.index, part),
                timestamp=start,
                spread_seconds=(end - start).total_seconds(),
                services=window.services,
                anomaly=context_for(window),
                anomalous_share=anomalous_share(window.intensity),
                windows=tuple(c for c, w in zip(contexts, windows, strict=True) if w is not window),
                kinds=KINDS,
            )
        )
    return requests


def window_part(
    config: HistoryConfig, chunk: Chunk, start: datetime, end: datetime
) -> tuple[datetime, datetime, int]:
    """The overlap of a window [start, end) with a chunk, and the logs and spans made for it:
    ``logs_apm_per_step`` per step of the overlap, rounded up."""
    first = max(start, chunk.start)
    last = min(end, chunk.end, config.end)
    overlap = (last - first).total_seconds()
    if overlap <= 0:
        return first, last, 0
    return first, last, math.ceil(overlap / config.resolution_seconds) * config.logs_apm_per_step


def planned_records(
    config: HistoryConfig, chunks: Sequence[Chunk], windows: Sequence[PlannedWindow]
) -> int:
    """Every record the run asks for (the grid, the background logs and spans, the windows')."""
    total = config.steps * per_step_records(config)
    for chunk in chunks:
        for window in windows:
            total += window_part(config, chunk, window.start, window.end)[2]
    return total


# --- the run --------------------------------------------------------------------------------

WindowRecorder = Callable[[PlannedWindow, str], Window]


@dataclass
class HistoryRun:
    id: str
    config: HistoryConfig
    planned: list[PlannedWindow]
    chunks: list[Chunk]
    records_planned: int
    status: str = "running"  # running | completed | failed | stopped
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    start_mono: float = field(default_factory=time.monotonic)
    end_mono: float | None = None
    chunks_done: int = 0
    generated_until: datetime | None = None
    windows: list[Window] = field(default_factory=list)
    recorded: dict[int, Window] = field(default_factory=dict)  # planned index -> its window
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_ERRORS_KEPT))
    tally: Tally = field(default_factory=Tally)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def elapsed(self) -> float:
        return (self.end_mono or time.monotonic()) - self.start_mono


@dataclass(frozen=True)
class HistoryProgress:
    id: str
    status: str
    start: datetime
    end: datetime
    resolution_seconds: float
    services: tuple[str, ...]
    seed: int
    started_at: datetime
    finished_at: datetime | None
    elapsed_seconds: float
    chunks_total: int
    chunks_done: int
    generated_until: datetime | None
    records_planned: int
    records_requested: int
    records_accepted: int
    records_failed: int
    synthesis_calls: int
    synthesis_retries: int
    records_per_second: float
    simulated_days_per_minute: float
    windows_planned: int
    windows: tuple[Window, ...]
    errors: tuple[str, ...]


def progress(run: HistoryRun) -> HistoryProgress:
    elapsed = run.elapsed()
    with run.lock:
        done_until = run.generated_until
        tally = run.tally
        simulated = (done_until - run.config.start).total_seconds() if done_until else 0.0
        return HistoryProgress(
            id=run.id,
            status=run.status,
            start=run.config.start,
            end=run.config.end,
            resolution_seconds=run.config.resolution_seconds,
            services=run.config.services,
            seed=run.config.seed,
            started_at=run.started_at,
            finished_at=run.finished_at,
            elapsed_seconds=round(elapsed, 3),
            chunks_total=len(run.chunks),
            chunks_done=run.chunks_done,
            generated_until=done_until,
            records_planned=run.records_planned,
            records_requested=tally.requested,
            records_accepted=tally.produced,
            records_failed=tally.failed,
            synthesis_calls=tally.calls,
            synthesis_retries=tally.retries,
            records_per_second=round(tally.produced / elapsed, 1) if elapsed > 0 else 0.0,
            simulated_days_per_minute=round(simulated / 86_400 / (elapsed / 60), 3)
            if elapsed > 0
            else 0.0,
            windows_planned=len(run.planned),
            windows=tuple(run.windows),
            errors=tuple(run.errors),
        )


class HistoryRunner:
    """One history run at a time (a second start while one runs is a 409); the last
    ``MAX_RUNS_KEPT`` runs stay readable."""

    def __init__(
        self, synthesis: SynthesisClient, record_window: WindowRecorder, calls_in_flight: int
    ) -> None:
        self._synthesis = synthesis
        self._record_window = record_window
        self._calls_in_flight = max(1, calls_in_flight)
        self._runs: dict[str, HistoryRun] = {}
        self._lock = threading.Lock()

    def start(self, config: HistoryConfig, planned: list[PlannedWindow]) -> HistoryProgress:
        with self._lock:
            if any(r.running for r in self._runs.values()):
                raise HistoryAlreadyRunning()
            chunks = plan_chunks(config)
            run = HistoryRun(
                id=uuid.uuid4().hex,
                config=config,
                planned=planned,
                chunks=chunks,
                records_planned=planned_records(config, chunks, planned),
            )
            run.thread = threading.Thread(
                target=self._loop, args=(run,), name="history", daemon=True
            )
            self._runs[run.id] = run
            while len(self._runs) > MAX_RUNS_KEPT:
                oldest = next(iter(self._runs))
                if self._runs[oldest].running:
                    break
                del self._runs[oldest]
            run.thread.start()
        return progress(run)

    def get(self, run_id: str) -> HistoryProgress:
        return progress(self._run(run_id))

    def list(self) -> list[HistoryProgress]:
        with self._lock:
            runs = list(self._runs.values())
        return [progress(r) for r in reversed(runs)]

    def stop(self, run_id: str, wait_seconds: float = 30.0) -> HistoryProgress:
        run = self._run(run_id)
        run.stop.set()
        if run.thread is not None:
            run.thread.join(wait_seconds)
        return progress(run)

    def stop_all(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(30.0)

    def _run(self, run_id: str) -> HistoryRun:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise HistoryNotFound(run_id)
        return run

    # --- the run's thread ---------------------------------------------------------------------
    def _loop(self, run: HistoryRun) -> None:
        status = "completed"
        pending: deque[tuple[Chunk, Future[None]]] = deque()
        try:
            with ThreadPoolExecutor(self._calls_in_flight, thread_name_prefix="history") as pool:
                for chunk in run.chunks:
                    if run.stop.is_set():
                        break
                    windows = self._windows_for(run, chunk)
                    requests = chunk_requests(run.config, chunk, windows)
                    while len(pending) >= self._calls_in_flight:
                        self._finish(run, *pending.popleft())
                    pending.append((chunk, pool.submit(self._send, run, requests)))
                while pending:
                    self._finish(run, *pending.popleft())
        except Exception as exc:  # a bug must still end the run visibly
            status = "failed"
            with run.lock:
                run.errors.append(f"{type(exc).__name__}: {exc}")
        if status != "failed":
            if run.stop.is_set():
                status = "stopped"
            elif run.tally.failed:
                status = "failed"
        with run.lock:
            run.status = status
            run.finished_at = datetime.now(UTC)
            run.end_mono = time.monotonic()

    def _windows_for(self, run: HistoryRun, chunk: Chunk) -> list[Window]:
        """The windows overlapping the chunk, recorded in the ground truth on first use."""
        overlapping = []
        for index, planned in enumerate(run.planned):
            if not (planned.start < chunk.end and chunk.start < planned.end):
                continue
            window = run.recorded.get(index)
            if window is None:
                window = run.recorded[index] = self._record_window(planned, f"history:{run.id}")
                with run.lock:
                    run.windows.append(window)
            overlapping.append(window)
        return overlapping

    def _send(self, run: HistoryRun, requests: list[SynthesisRequest]) -> None:
        for request in requests:
            outcome = self._synthesis.synthesize(request, run.stop)
            with run.lock:
                run.tally.record(outcome, "history")
                if outcome.error is not None and outcome.produced < outcome.requested:
                    run.errors.append(outcome.error)

    def _finish(self, run: HistoryRun, chunk: Chunk, future: Future[None]) -> None:
        future.result()
        with run.lock:
            run.chunks_done += 1
            run.generated_until = min(chunk.end, run.config.end)

"""The ETL service process: the fold loop in the main thread, its API in a thread.

``python -m stages.etl`` (or ``python -m stages.etl serve``) runs the service on ETL_PORT (8020):
``/health``, ``/metrics``, ``/docs`` and ``GET /api/etl/status``.
``python -m stages.etl backfill --from 2026-12-01T00 --to 2026-12-01T06`` rebuilds the tables for
the hours from ``--from`` up to, not including, ``--to`` from the raw zone (``backfill.py``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from stages.common import aws
from stages.common.config import Settings, describe_settings_error, get_settings
from stages.common.counters import OutcomeCounters
from stages.common.errors import Unprocessable
from stages.common.lakehouse import FEATURES_LOCATION, FEATURES_TABLE
from stages.common.logging_setup import configure_logging
from stages.common.named_lease import NamedLease
from stages.common.runtime import tune_process
from stages.common.service import create_service_app, serve_in_thread
from stages.etl import backfill as backfill_module
from stages.etl.committer import Committer
from stages.etl.compaction import Maintenance
from stages.etl.features import COUNTER_NAMES, FeatureBuilder
from stages.etl.fold import CommitCallback, CommitInfo, Etl
from stages.etl.reads import RawReader
from stages.etl.tables import open_catalog

log = logging.getLogger(__name__)

LEASE_NAME = "etl-writer"
# How long after a watermark the features thread runs: enough for the builder's own clock
# reading to be past it.
WATERMARK_MARGIN_SECONDS = 0.05


class Totals(BaseModel):
    objects_folded: int
    records_in: int
    quarantined: int
    rows_logs: int
    rows_metrics: int
    rows_apm: int
    rows_quarantine: int


class FeaturesStatus(BaseModel):
    """``telemetry.features`` as this process keeps it (``FeatureBuilder.status()``)."""

    table: str
    location: str
    bucket_seconds: int
    allowed_lateness_seconds: float
    # False until this process first ran the features step (it runs on the lease holder only).
    builder_started: bool
    pending_partitions: list[str]
    last_write: str | None
    last_error: str | None
    partitions_rebuilt: int
    partitions_written: int
    buckets_written: int
    late_records: int
    rebuild_failures: int


class EtlStatus(BaseModel):
    worker_id: str
    lease_held: bool
    lease_token: int | None
    folds: int
    objects_listed: int
    backlog_objects: int
    backlog_bytes: int
    lag_seconds: float
    last_commit_at: str | None
    last_error: str | None
    totals: Totals
    features: FeaturesStatus | None


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class FeatureStep:
    """The features table kept up by the lease holder: rebuilt after every commit that touched
    a curated partition, and checked after every fold for buckets whose watermark passed.

    In the service the rebuilds run on a thread of their own (:meth:`start`): the fold loop only
    hands over the touched partitions, so a rebuild (seconds of Iceberg reads and a commit) does
    not delay the next fold, which is what bounds how fresh the curated tables are. The thread
    runs on the clock, right after each bucket's watermark (bucket end + the allowed lateness;
    at least once per fold interval), not when a commit lands: a closed bucket is then written
    as soon as it may be, which is what live detection waits for, and the partitions touched by
    the folds in between go into that same rebuild. Partitions handed over while a rebuild runs
    are merged into the next one; a rebuild that raises keeps its partitions for the next
    attempt. The thread writes only while ``may_write`` says this
    process holds the writer lease. Without :meth:`start` (tests, scripts) every call runs in
    the caller, as the builder's own calls do.

    The builder is made on first use, so a catalog that is not reachable yet when the process
    starts is a failed step (retried), not a process that cannot start."""

    def __init__(
        self, catalog: Any, settings: Settings, may_write: Callable[[], bool] = lambda: True
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._may_write = may_write
        self.builder: FeatureBuilder | None = None
        # Made once: a builder made again (a new lease tenure) keeps counting from here.
        self._counters: OutcomeCounters | None = None
        # Why the builder could not be made (it is tried again at the next call).
        self.start_error: str | None = None
        self._touched: set[tuple[str, str, Any, int]] = set()
        self._written: list[tuple[str, str, Any]] = []
        self._handover = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _builder(self) -> FeatureBuilder:
        if self._counters is None:
            self._counters = OutcomeCounters(
                "etl_features", COUNTER_NAMES, "telemetry.features outcomes"
            )
        if self.builder is None:
            try:
                self.builder = FeatureBuilder(
                    self._catalog, self._settings, counters=self._counters
                )
            except Exception as exc:
                self.start_error = f"{type(exc).__name__}: {exc}"
                raise
            self.start_error = None
        return self.builder

    def after_commit(self, info: CommitInfo) -> None:
        touched = {(p.table, p.service, p.dt, p.hr) for p in info.partitions}
        # The fold's own rows stand for the files it just wrote: not read back from S3.
        written = [(kind, f.data_file.file_path, f.rows) for kind, f in info.files]
        if self._thread is None:
            builder = self._builder()
            builder.prime(written)
            builder.after_commit(touched, info.committed_at)
            return
        with self._handover:
            self._touched |= touched
            self._written.extend(written)
        self._wake.set()

    def tick(self, now: datetime) -> None:
        if self._thread is None:
            self._builder().tick(now)
            return
        self._wake.set()

    # --- the service's thread ---------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="etl-features", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def next_run(self, now: float) -> float:
        """When the thread next looks (epoch seconds): just after the next bucket's watermark,
        or one fold interval after ``now`` when that comes first (wide buckets)."""
        width = self._settings.features_bucket_seconds
        lateness = self._settings.features_allowed_lateness_seconds
        watermark = (math.floor((now - lateness) / width) + 1) * width + lateness
        return min(watermark + WATERMARK_MARGIN_SECONDS, now + self._settings.etl_interval_seconds)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.builder is None:
                # The builder is made at the end of a fold, never in the middle of one (its
                # start would read back from the curated tables what the fold hands over).
                woken = self._wake.wait(self._settings.etl_interval_seconds)
            else:
                # The stop event, not the commit wake: a commit's partitions wait for the next
                # watermark, so each bucket width costs one rebuild, not one per commit as well.
                due = self.next_run(time.time())
                while not self._stop.is_set() and (left := due - time.time()) > 0:
                    self._stop.wait(left)
                woken = True
            self._wake.clear()
            if self._stop.is_set() or not woken:
                continue
            if not self._may_write():
                # Another process may write the tables until this one holds the lease again:
                # the next tenure's builder starts from what the tables hold.
                with self._handover:
                    self._touched, self._written = set(), []
                self.builder = None
                continue
            with self._handover:
                touched, self._touched = self._touched, set()
                written, self._written = self._written, []
            try:
                builder = self._builder()
                # Primed in this thread: the builder's lock is held for a whole rebuild, which
                # the fold loop must not wait for.
                builder.prime(written)
                builder.after_commit(touched, datetime.now(UTC))
            except Exception:
                with self._handover:
                    self._touched |= touched
                log.exception("features step failed; retried at the next commit or interval")

    def status(self) -> dict[str, Any]:
        if self.builder is not None:
            return {**self.builder.status(), "builder_started": True}
        return {
            "table": FEATURES_TABLE,
            "location": FEATURES_LOCATION,
            "bucket_seconds": self._settings.features_bucket_seconds,
            "allowed_lateness_seconds": self._settings.features_allowed_lateness_seconds,
            "builder_started": False,
            "pending_partitions": [],
            "last_write": None,
            "last_error": self.start_error,
            **(self._counters.snapshot() if self._counters else dict.fromkeys(COUNTER_NAMES, 0)),
        }


# Arrow's bundled mimalloc hands freed memory back to the kernel within milliseconds and takes
# it again, page by page, on the next fold: measured on a fold of 100,000 records
# (benchmarks.etl_fold, docs/performance.md), 0.38-0.48 s of kernel CPU in the process's first
# fold and 0.12-0.25 s in each later one, against 0.17-0.20 s and 0.07-0.14 s with the C
# library's malloc, whose heap keeps what it had until the process's periodic malloc_trim.
MEMORY_POOLS: dict[str, Callable[[], pa.MemoryPool]] = {
    "system": pa.system_memory_pool,
    "mimalloc": pa.mimalloc_memory_pool,
    "jemalloc": pa.jemalloc_memory_pool,
}


def use_memory_pool(name: str) -> None:
    """Make ``name`` (ETL_ARROW_MEMORY_POOL) Arrow's default memory pool in this process.
    Buffers allocated before keep the pool they came from."""
    try:
        pool = MEMORY_POOLS[name]()
    except NotImplementedError:
        # A pyarrow built without that allocator: keep its default rather than not start.
        log.warning("Arrow has no %s memory pool here; keeping %s", name, pa.default_memory_pool())
        return
    pa.set_memory_pool(pool)


def build_etl(settings: Settings, on_commit: list[CommitCallback] | None = None) -> Etl:
    return build_service(settings, on_commit)[0]


def build_service(
    settings: Settings, on_commit: list[CommitCallback] | None = None
) -> tuple[Etl, FeatureStep]:
    """The fold loop and the features step it drives."""
    use_memory_pool(settings.etl_arrow_memory_pool)
    owner = settings.etl_worker_id or default_worker_id()
    lease = NamedLease(
        aws.client("dynamodb", settings),
        settings.etl_lease_table,
        LEASE_NAME,
        owner,
        settings.etl_lease_seconds,
    )
    catalog = open_catalog(settings)
    # Stop committing well before the lease could be taken over.
    reader = RawReader(settings)
    committer = Committer(catalog, lease, settings.etl_lease_seconds / 3, store=reader)
    s3 = aws.client("s3", settings)
    # The features thread writes only while the fold loop could commit too.
    features = FeatureStep(catalog, settings, lambda: lease.held(settings.etl_lease_seconds / 3))
    etl = Etl(
        settings,
        s3=s3,
        committer=committer,
        lease=lease,
        on_commit=[features.after_commit, *(on_commit or [])],
        periodic=[features.tick],
        maintenance=Maintenance(settings, committer, s3),
        reader=reader,
    )
    return etl, features


def create_app(
    settings: Settings | None = None,
    *,
    etl: Etl | None = None,
    features: FeatureStep | None = None,
) -> Any:
    """The ETL's HTTP app; over ``etl`` (and its ``features`` step) when given (the process's
    own loop), else over an ETL built from ``settings`` whose loop is not started (the fuzz
    tests serve it like that)."""
    if etl is None:
        etl, features = build_service(settings or get_settings())
    router = APIRouter(prefix="/api/etl", tags=["etl"])

    @router.get(
        "/status", summary="Progress of the fold: lease, backlog, lag, totals, features table"
    )
    def get_status(request: Request) -> EtlStatus:
        step: FeatureStep | None = request.app.state.features
        return EtlStatus(
            **request.app.state.etl.status(),
            features=step.status() if step is not None else None,
        )

    app = create_service_app(
        "etl",
        health=etl.health,
        status=lambda: etl.status()["totals"],
        routers=[router],
        description="Stage 02: folds the raw zone into Iceberg tables in the Glue catalog.",
    )
    app.state.etl = etl
    app.state.features = features
    return app


def serve(settings: Settings) -> int:
    etl, features = build_service(settings)
    signal.signal(signal.SIGTERM, etl.request_stop)
    signal.signal(signal.SIGINT, etl.request_stop)
    app = create_app(etl=etl, features=features)
    server = serve_in_thread(app, settings.etl_host, settings.etl_port)
    features.start()
    try:
        etl.run()
    finally:
        features.stop()
    server.stop()
    return 0


def run_backfill(settings: Settings, start: str, end: str) -> int:
    try:
        first, last = backfill_module.parse_hour(start), backfill_module.parse_hour(end)
    except ValueError as exc:
        print(f"error: {exc} (use e.g. 2026-12-01T06)", file=sys.stderr)
        return 2
    if last <= first:
        print(
            f"error: --to must be after --from (as whole UTC hours: --from {first:%Y-%m-%dT%H}, "
            f"--to {last:%Y-%m-%dT%H}, which is not included)",
            file=sys.stderr,
        )
        return 2
    try:
        return _backfill_under_lease(settings, first, last)
    except backfill_module.BackfillStopped as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Unprocessable as exc:
        # A raw object that cannot be read whole (not gzip, a truncated gzip stream): its hour
        # cannot be rebuilt from the raw zone as it is.
        print(
            f"error: {exc.message}; the hours before its hour were rebuilt; move the object "
            "out of the raw zone (or repair it) and run the backfill again",
            file=sys.stderr,
        )
        return 1
    except (BotoCoreError, ClientError, OSError) as exc:
        # The catalog, S3 or the lease table did not answer: a message, not a traceback. A
        # backfill rewrites whole (table, hour) partitions, so running it again is safe.
        print(
            f"error: the lake (Glue, S3 or the lease table) failed: {type(exc).__name__}: {exc}; "
            "run the backfill again once it answers (it rewrites whole hours, so a rerun is safe)",
            file=sys.stderr,
        )
        return 1


def _backfill_under_lease(settings: Settings, first: datetime, last: datetime) -> int:
    etl = build_etl(settings)
    committer = etl.committer
    if not backfill_module.wait_for_lease(committer, settings.etl_lease_seconds):
        state = etl.lease.read()
        holder = state.owner if state else "?"
        print(
            f"error: the ETL writer lease is held by {holder}; stop the ETL service first",
            file=sys.stderr,
        )
        return 1
    try:
        committer.open()
        reports = backfill_module.backfill(settings, etl.s3, committer, first, last)
        # The features of the rewritten hours follow, as after a fold's commit (buckets still
        # inside the allowed lateness are left to the service).
        touched = set().union(*(report.touched for report in reports))
        features = FeatureBuilder(committer.catalog, settings).after_commit(
            touched, datetime.now(UTC)
        )
    finally:
        etl.lease.release()
    for report in reports:
        rows = ", ".join(f"{name} {count}" for name, count in sorted(report.rows.items()))
        kept = ", ".join(f"{table} {service}" for table, service in sorted(report.kept))
        print(
            f"{report.hour.strftime('%Y-%m-%dT%H')}: {report.objects} objects; rows: "
            f"{rows or 'none'}; outside the hour: {report.outside}"
            + (f"; kept, no raw objects left: {kept}" if kept else "")
        )
    if features.failed:
        # The curated tables are rebuilt; the features of these partitions are not.
        for partition, reason in sorted(features.failed.items(), key=lambda item: str(item[0])):
            print(f"error: features of {partition} not rebuilt: {reason}", file=sys.stderr)
        print(
            "error: telemetry.features is not up to date for these hours; run the backfill again",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.etl", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the ETL service (the default)")
    fill = commands.add_parser("backfill", help="rebuild the tables for a range of hours")
    fill.add_argument("--from", dest="start", required=True, help="first hour, e.g. 2026-12-01T00")
    fill.add_argument("--to", dest="end", required=True, help="end hour (not included)")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"error: invalid setting: {describe_settings_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings)
    # pyiceberg says "Loaded FileIO" at INFO on every table load, several times per fold.
    logging.getLogger("pyiceberg.io").setLevel(logging.WARNING)
    if args.command == "backfill":
        raise SystemExit(run_backfill(settings, args.start, args.end))
    tune_process(settings.memory_reclaim_seconds)
    raise SystemExit(serve(settings))

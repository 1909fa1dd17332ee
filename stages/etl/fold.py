"""The ETL loop: every ETL_INTERVAL_SECONDS, fold new raw objects into the Iceberg tables.

A fold, while this process holds the writer lease:

1. lists the raw zone (``planner``) and picks the objects no table says it holds;
2. reads them (``reads.RawReader``: obstore) and types them (``typing.type_jsonl``), tagging
   every row with its ``source_key``;
3. commits, for each table, one append of all its new rows: one data file per partition per
   fold. Order matters for the restart: first the quarantine table and the rows an object holds
   of another kind than its bucket's, then each data table with its own bucket's objects. An
   object is *complete* once its own bucket's table holds it, since everything else it holds was
   committed before; on start the service learns the ``source_key`` sets of the tables
   (``Committer.load_held``: a checkpoint plus the files it does not list) and folds again every
   object that is not complete, and the committer adds only the rows of tables that
   do not hold the object yet;
4. calls every ``on_commit`` callback with the partitions it touched and the files it wrote
   with their rows (the features step takes them instead of reading the files back).

Maintenance (``compaction``) runs between folds on its own schedule.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pyarrow as pa

from stages.common import lake
from stages.common.config import Settings
from stages.common.errors import Unprocessable
from stages.common.named_lease import LeaseLost, NamedLease
from stages.etl import metrics, planner
from stages.etl.committer import SOURCE, Committer, Partition, partitions_of, with_source
from stages.etl.datafiles import WrittenFile
from stages.etl.faults import FaultPoint
from stages.etl.planner import RawObject
from stages.etl.tables import TABLE_NAMES
from stages.etl.typing import KINDS, quarantine_object, type_jsonl

log = logging.getLogger(__name__)

READ_THREADS = 8


@dataclass(frozen=True)
class CommitInfo:
    """What one fold committed: the (table, service, dt, hr) partitions it touched, and the
    data files it appended with their rows, by kind (so a callback need not read them back)."""

    partitions: frozenset[Partition]
    committed_at: datetime
    objects: int
    rows: dict[str, int]
    files: tuple[tuple[str, WrittenFile], ...] = ()


CommitCallback = Callable[[CommitInfo], None]


@dataclass
class FoldResult:
    objects: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    partitions: set[Partition] = field(default_factory=set)


@dataclass
class _Typed:
    """The typed rows of one or more raw objects of one bucket."""

    objects: list[RawObject]
    kind: str  # the bucket's kind
    lines: int
    tables: dict[str, pa.Table]  # kind -> rows with source_key
    quarantine: pa.Table


def read_lines(s3: Any, obj: RawObject) -> list[bytes]:
    return lake.read_lines(s3, obj.bucket, obj.key).require_complete().lines


def read_object(s3: Any, obj: RawObject) -> bytes:
    return b"\n".join(read_lines(s3, obj))


def read_body(reader: Any, obj: RawObject) -> bytes:
    """The JSONL of one raw object, every line ending with a newline: a plain object in one
    GET as it is stored (``RawReader.read_plain``), a gzip object inflated piece by piece up
    to the lake's cap (``lake.read_lines``)."""
    if not lake.is_gzip(obj.key) and hasattr(reader, "read_plain"):
        return _terminated(reader.read_plain(obj.bucket, obj.key))
    lines = read_lines(reader, obj)
    return b"\n".join(lines) + b"\n" if lines else b""


def _terminated(body: bytes) -> bytes:
    return body + b"\n" if body and not body.endswith(b"\n") else body


def _as_jsonl(body: bytes | list[bytes]) -> bytes:
    if isinstance(body, list):
        return b"\n".join(body) + b"\n" if body else b""
    return _terminated(body)


def type_object(obj: RawObject, data: bytes) -> _Typed:
    typed = type_jsonl(data, source_key=obj.key, partition=obj.partition)
    tables = {
        kind: with_source(table, obj.key) for kind, table in typed.tables.items() if table.num_rows
    }
    return _Typed([obj], obj.kind, typed.lines, tables, typed.quarantine)


def unreadable(obj: RawObject, reason: str) -> _Typed:
    """An object whose body cannot be read as lines (not valid gzip, a truncated stream, more
    than the reader may inflate) as one quarantine row naming it (line 0, no line): folded
    and counted like a malformed line, instead of failing every fold after it."""
    row = quarantine_object(obj.key, obj.partition, obj.kind, f"unreadable object: {reason}")
    return _Typed([obj], obj.kind, 0, {}, row)


def _non_blank(lines: list[bytes]) -> int:
    return sum(1 for line in lines if line and not line.isspace())


def type_group(objects: list[RawObject], bodies: Sequence[bytes | list[bytes]]) -> list[_Typed]:
    """Type the objects of one raw partition (bucket, service, hour) with one typing call.

    ``bodies`` holds each object's JSONL (``read_body``), or its lines. Typing has a fixed cost
    per call that is larger than the work for a 1 s object of a few dozen lines, so the objects
    are typed together and each row is given its object afterwards: typing keeps the input order
    of the rows of a kind, so the rows of a bucket's own kind are, in order, each object's
    non-blank lines minus its quarantined ones. When that does not hold (rows of another kind,
    counts that disagree) the objects are typed one by one.
    """
    datas = [_as_jsonl(body) for body in bodies]
    if len(objects) == 1:
        return [type_object(objects[0], datas[0])]
    kind = objects[0].kind
    counts = [data.count(b"\n") for data in datas]
    starts = list(itertools.accumulate(counts, initial=0))
    try:
        typed = type_jsonl(b"".join(datas), partition=objects[0].partition)
    except Exception:
        typed = None

    def one_by_one() -> list[_Typed]:
        return [type_object(o, data) for o, data in zip(objects, datas, strict=True)]

    if typed is None or any(t.num_rows for k, t in typed.tables.items() if k != kind):
        return one_by_one()
    quarantine = typed.quarantine
    line_numbers = quarantine.column("line_number").to_pylist()
    owners = [bisect.bisect_right(starts, n - 1) - 1 for n in line_numbers]
    quarantined = collections.Counter(owners)
    table = typed.tables[kind]
    rows = [count - quarantined[i] for i, count in enumerate(counts)]
    if sum(rows) != table.num_rows:
        # Blank lines, which are no records: count the others.
        rows = [_non_blank(data.split(b"\n")[:-1]) - quarantined[i] for i, data in enumerate(datas)]
    if min(rows) < 0 or sum(rows) != table.num_rows:
        return one_by_one()
    indices = pa.array(
        itertools.chain.from_iterable(itertools.repeat(i, n) for i, n in enumerate(rows)),
        pa.int32(),
    )
    keys = pa.array([o.key for o in objects], pa.string())
    table = table.append_column(SOURCE, pa.DictionaryArray.from_arrays(indices, keys))
    if quarantine.num_rows:
        names = quarantine.schema.names
        quarantine = quarantine.set_column(
            names.index("source_key"),
            "source_key",
            pa.array([objects[i].key for i in owners], pa.string()),
        ).set_column(
            names.index("line_number"),
            "line_number",
            pa.array(
                [n - starts[i] for n, i in zip(line_numbers, owners, strict=True)], pa.int32()
            ),
        )
    tables = {kind: table} if table.num_rows else {}
    return [_Typed(objects, kind, typed.lines, tables, quarantine)]


class Etl:
    def __init__(
        self,
        settings: Settings,
        *,
        s3: Any,
        committer: Committer,
        lease: NamedLease,
        on_commit: list[CommitCallback] | None = None,
        periodic: list[Callable[[datetime], None]] | None = None,
        maintenance: Callable[[datetime], None] | None = None,
        reader: Any = None,
    ) -> None:
        self.settings = settings
        self.s3 = s3
        # What GETs the raw objects (``reads.RawReader`` in the service); the boto3 client if
        # none is given.
        self.reader = reader if reader is not None else s3
        self.committer = committer
        self.lease = lease
        self.on_commit: list[CommitCallback] = on_commit if on_commit is not None else []
        # Steps that run after every fold made by the lease holder, commit or not (a features
        # bucket becomes due when its watermark passes, whether or not new data came).
        self.periodic: list[Callable[[datetime], None]] = periodic if periodic is not None else []
        self.maintenance = maintenance
        self.faults = FaultPoint(settings.etl_fault_pause_at)
        # Keys of objects folded whole by this process that their bucket's table need not hold
        # (every line quarantined, or of another kind).
        self.complete: set[str] = set()
        self.waiting: dict[str, RawObject] = {}  # listed objects not folded yet
        self.last_listed = 0
        self.opened = False
        self.loaded_fence: int | None = None
        self.stop_event = threading.Event()
        self._last_full_listing = -float("inf")
        self._last_lookback_listing = -float("inf")
        # The first pass waits one interval: a service restarted in a loop does not rewrite
        # the same partitions on every start.
        self._last_maintenance = time.monotonic()
        self._last_keys_saved = -float("inf")
        self._keys_changed = False
        self.last_fold_ok: float | None = None
        self.last_error: str | None = None
        self.last_commit_at: datetime | None = None
        self.folds = 0
        self.totals: dict[str, int] = {
            "objects_folded": 0,
            "records_in": 0,
            "quarantined": 0,
            **{f"rows_{name}": 0 for name in TABLE_NAMES.values()},
        }

    # --- loop -----------------------------------------------------------------------------
    def run(self) -> None:
        interval = self.settings.etl_interval_seconds
        self.lease.keep_renewed(self.stop_event)
        while not self.stop_event.is_set():
            started = time.monotonic()
            self.tick()
            self.stop_event.wait(max(0.0, interval - (time.monotonic() - started)))
        self.lease.release()
        metrics.LEASE_HELD.set(0)

    def request_stop(self, *_: Any) -> None:
        self.stop_event.set()

    def tick(self) -> None:
        try:
            if not self.ensure_lease():
                self.last_fold_ok = time.monotonic()
                self.last_error = None
                return
            self.fold_once()
            self.last_fold_ok = time.monotonic()
            self.last_error = None
        except LeaseLost as exc:
            metrics.LEASE_LOST.inc()
            metrics.LEASE_HELD.set(0)
            self.loaded_fence = None
            self.last_error = f"lease lost: {exc}"
            log.warning("%s", self.last_error)
            return
        except Exception as exc:
            metrics.FOLD_ERRORS.labels(type(exc).__name__).inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            # What the tables hold is read again before the next fold.
            self.loaded_fence = None
            log.exception("fold failed; retried in %ss", self.settings.etl_interval_seconds)
            return
        for step in list(self.periodic):
            try:
                step(datetime.now(UTC))
            except Exception:
                log.exception("periodic step %r failed", step)
        now = time.monotonic()
        if (
            self.maintenance is not None
            and now - self._last_maintenance >= self.settings.etl_maintenance_interval_seconds
        ):
            self._last_maintenance = now
            self.maintenance(datetime.now(UTC))
            self._keys_changed = True  # compaction wrote files no checkpoint lists
        self.save_source_keys()

    def save_source_keys(self) -> None:
        """Checkpoint the source keys per data file every ETL_SOURCE_KEYS_CHECKPOINT_SECONDS,
        if the tables changed. A failure costs only the next start's time: it reads the files
        the last checkpoint does not list."""
        now = time.monotonic()
        if not self._keys_changed or (
            now - self._last_keys_saved < self.settings.etl_source_keys_checkpoint_seconds
        ):
            return
        try:
            self.committer.save_held()
        except Exception as exc:
            metrics.SOURCE_KEY_CHECKPOINT_ERRORS.inc()
            log.warning("source keys not checkpointed (retried after the next fold): %s", exc)
            return
        self._last_keys_saved = now
        self._keys_changed = False

    def ensure_lease(self) -> bool:
        before = self.lease.fence
        held = self.lease.acquire()
        metrics.LEASE_HELD.set(1 if held else 0)
        if not held:
            if before is not None:
                metrics.LEASE_LOST.inc()
            self.loaded_fence = None
            return False
        if before != self.lease.fence:
            metrics.LEASE_TAKEN.inc()
            log.info("holding the writer lease (token %s)", self.lease.fence)
        if not self.opened:
            self.committer.open()
            self.opened = True
        if self.loaded_fence != self.lease.fence:
            # A new tenure: another writer may have committed since we last looked.
            self.committer.load_held()
            self.complete = set()
            self.waiting = {}
            self._last_full_listing = -float("inf")
            self._last_lookback_listing = -float("inf")
            self.loaded_fence = self.lease.fence
        return True

    # --- one fold -------------------------------------------------------------------------
    def list_objects(self) -> None:
        now = time.monotonic()
        wall = datetime.now(UTC)
        if now - self._last_full_listing >= self.settings.etl_full_listing_seconds:
            listed = planner.list_all(self.s3, self.settings)
            self._last_full_listing = self._last_lookback_listing = now
        elif now - self._last_lookback_listing >= self.settings.etl_lookback_listing_seconds:
            listed = planner.list_recent(self.s3, self.settings, wall)
            self._last_lookback_listing = now
        else:
            listed = planner.list_near(self.s3, self.settings, wall)
        self.last_listed = len(listed)
        for obj in listed:
            if not self.done(obj):
                self.waiting.setdefault(obj.key, obj)

    def done(self, obj: RawObject) -> bool:
        return obj.key in self.committer.held[obj.kind] or obj.key in self.complete

    def pending(self) -> list[RawObject]:
        return [obj for obj in self.waiting.values() if not self.done(obj)]

    def fold_once(self) -> FoldResult:
        self.list_objects()
        waiting = self.pending()
        self._observe_backlog(waiting)
        chosen = planner.take(waiting, self.settings.etl_max_run_bytes)
        result = FoldResult()
        if not chosen:
            return result
        typed = self._read_and_type(chosen)
        self.faults.reach("before-write")
        self.committer.take_written()

        def after_files() -> None:
            self.faults.reach("after-data-files")

        # Phase 1: quarantine rows and rows of another kind than their object's bucket.
        quarantine = [t.quarantine for t in typed if t.quarantine.num_rows]
        if quarantine:
            written = self.committer.append_new("quarantine", quarantine, after_files=after_files)
            result.quarantined = written.num_rows
            if written.num_rows:
                metrics.RECORDS_WRITTEN.labels("quarantine").inc(written.num_rows)
                result.rows["quarantine"] = written.num_rows
            result.partitions |= partitions_of("quarantine", written)
        for kind in KINDS:
            foreign = [t.tables[kind] for t in typed if kind in t.tables and t.kind != kind]
            if foreign:
                self._append(kind, foreign, result, after_files)
        # Phase 2: each data table with its own bucket's objects; this completes them.
        for kind in KINDS:
            own = [t.tables[kind] for t in typed if kind in t.tables and t.kind == kind]
            if own:
                self._append(kind, own, result, after_files)
        committed_at = datetime.now(UTC)
        self.faults.reach("after-commit")

        for t in typed:
            for obj in t.objects:
                if obj.key not in self.committer.held[obj.kind]:
                    self.complete.add(obj.key)
                self.waiting.pop(obj.key, None)
                metrics.OBJECTS_FOLDED.labels(obj.bucket).inc()
                metrics.RAW_BYTES.labels(obj.bucket).inc(obj.size)
            metrics.RECORDS_IN.labels(t.kind).inc(t.lines)
        metrics.QUARANTINED.inc(result.quarantined)
        result.objects = sum(len(t.objects) for t in typed)
        self.folds += 1
        self.totals["objects_folded"] += result.objects
        self.totals["records_in"] += sum(t.lines for t in typed)
        self.totals["quarantined"] += result.quarantined
        for name, rows in result.rows.items():
            self.totals[f"rows_{name}"] += rows
        if result.partitions:
            self._keys_changed = True
            self.last_commit_at = committed_at
            metrics.LAST_COMMIT.set(committed_at.timestamp())
            info = CommitInfo(
                frozenset(result.partitions),
                committed_at,
                result.objects,
                dict(result.rows),
                tuple(self.committer.take_written()),
            )
            for callback in list(self.on_commit):
                try:
                    callback(info)
                except Exception:
                    log.exception("on_commit callback %r failed", callback)
        self._observe_backlog(self.pending())
        log.info(
            "folded %d objects: %s rows, %d quarantined",
            result.objects,
            result.rows,
            result.quarantined,
        )
        return result

    def _append(
        self,
        kind: str,
        parts: list[pa.Table],
        result: FoldResult,
        after_files: Callable[[], None],
    ) -> None:
        name = TABLE_NAMES[kind]
        written = self.committer.append_new(kind, parts, after_files=after_files)
        if written.num_rows:
            metrics.RECORDS_WRITTEN.labels(name).inc(written.num_rows)
            result.rows[name] = result.rows.get(name, 0) + written.num_rows
            result.partitions |= partitions_of(name, written)

    def _read_and_type(self, chosen: list[RawObject]) -> list[_Typed]:
        with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="etl-read") as pool:
            bodies = list(pool.map(self._read_or_refusal, chosen))
        groups: dict[tuple[str, Any], list[int]] = collections.defaultdict(list)
        typed: list[_Typed] = []
        for i, obj in enumerate(chosen):
            body = bodies[i]
            if isinstance(body, Unprocessable):
                log.warning("raw object %s/%s quarantined: %s", obj.bucket, obj.key, body)
                metrics.UNREADABLE.labels(obj.bucket).inc()
                typed.append(unreadable(obj, str(body)))
            else:
                groups[(obj.bucket, obj.partition)].append(i)
        for members in groups.values():
            typed.extend(
                type_group([chosen[i] for i in members], [cast(bytes, bodies[i]) for i in members])
            )
        return typed

    def _read_or_refusal(self, obj: RawObject) -> bytes | Unprocessable:
        """The object's body, or the refusal of a body that no retry can read. Any other error
        (the lake unreachable, a throttled GET) fails the fold, which the next tick retries."""
        try:
            return read_body(self.reader, obj)
        except Unprocessable as exc:
            return exc

    def _observe_backlog(self, waiting: list[RawObject]) -> None:
        metrics.BACKLOG_OBJECTS.set(len(waiting))
        metrics.BACKLOG_BYTES.set(sum(o.size for o in waiting))
        if waiting:
            oldest = min(o.modified for o in waiting)
            metrics.LAG_SECONDS.set(max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
        else:
            metrics.LAG_SECONDS.set(0)

    # --- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        waiting = self.pending()
        oldest = min((o.modified for o in waiting), default=None)
        return {
            "worker_id": self.lease.owner,
            "lease_held": self.lease.held(),
            "lease_token": self.lease.fence,
            "folds": self.folds,
            "objects_listed": self.last_listed,
            "backlog_objects": len(waiting),
            "backlog_bytes": sum(o.size for o in waiting),
            "lag_seconds": (
                round((datetime.now(UTC) - oldest).total_seconds(), 1) if oldest else 0.0
            ),
            "last_commit_at": self.last_commit_at.isoformat() if self.last_commit_at else None,
            "last_error": self.last_error,
            "totals": dict(self.totals),
        }

    def health(self) -> tuple[bool, dict[str, Any]]:
        stale_after = max(3 * self.settings.etl_interval_seconds, 30.0)
        fresh = self.last_fold_ok is not None and time.monotonic() - self.last_fold_ok < stale_after
        details = {"lease_held": self.lease.held(), "worker_id": self.lease.owner}
        if self.last_fold_ok is None and self.last_error is None:
            # Starting: healthy as a process; the first fold runs now.
            return True, details | {"state": "starting"}
        if not fresh:
            details["reason"] = self.last_error or "no fold finished recently"
        return fresh, details

"""The labelled history the scoreboard scores, made in process with the real path's code.

The layout (``Layout``): ``learn_days`` of normal traffic for the detectors to learn from, then
``test_days`` with ``windows`` anomaly windows spread over them (one anomaly type after another,
in an order drawn from the seed, a scenario of that type drawn among those on the history's
services, an intensity drawn from ``INTENSITIES``), then ``normal_days`` with no window, where
every event is a false alarm.

What is the same as in production:
- the windows: ``stages.orchestrator.history.plan_windows`` on a ``HistoryConfig`` whose
  ``schedule`` holds them, recorded with ``GroundTruth.record_window`` and the scope
  ``ground_truth.scope_for`` gives (log type emitters as Log Synthesis lists them);
- the records: ``history.plan_chunks`` and ``history.chunk_requests`` give the synthesis calls
  the orchestrator would send, validated by Log Synthesis' ``SynthesizeRequest`` and made by its
  ``generator.synthesize``;
- the features: each chunk's records typed by ``stages.etl.typing.type_jsonl`` and folded by
  ``stages.etl.features.compute_features`` at ``FEATURES_BUCKET_SECONDS``.

What is skipped is the transport (ingestion, Kinesis, the consumer, S3, the Iceberg commit): it is
proven exactly-once by its own tests, so the features table it produces holds the same rows.
Only the feature rows the configured series read are kept.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stages.detection.reader import SeriesSpec
from stages.etl.features import compute_features
from stages.etl.typing import type_jsonl
from stages.orchestrator.clients import derive_seed
from stages.orchestrator.ground_truth import GroundTruth, Window, scope_for
from stages.orchestrator.history import (
    HistoryConfig,
    ScheduledWindow,
    chunk_requests,
    eligible,
    plan_chunks,
    plan_windows,
)
from stages.orchestrator.scenario_catalogue import Scenario, ScenarioCatalogue
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.log_types import REGISTRY
from stages.synthesis.schemas import SynthesizeRequest

# A Monday at midnight UTC: the days of the default layout are all weekdays.
DEFAULT_START = datetime(2026, 3, 2, tzinfo=UTC)
INTENSITIES = (50.0, 70.0, 90.0)
# The entry point, a service with a database and one with a database, a queue and the
# business metrics: between them every anomaly type has a scenario. Three, not all ten, keeps a
# default run (four days of 10-second buckets) within minutes on a laptop.
SERVICES = ("api-gateway", "account-service", "payment-service")
# A window starts at least this long after the previous one ends, so the events of one are
# over before the next begins.
MIN_SPACING_SECONDS = 900.0


@dataclass(frozen=True)
class Layout:
    learn_days: float = 2.0
    test_days: float = 1.0
    normal_days: float = 1.0
    windows: int = 30
    services: tuple[str, ...] = SERVICES
    resolution_seconds: float = 10.0
    start: datetime = DEFAULT_START

    @property
    def test_start(self) -> datetime:
        return self.start + timedelta(days=self.learn_days)

    @property
    def normal_start(self) -> datetime:
        return self.test_start + timedelta(days=self.test_days)

    @property
    def end(self) -> datetime:
        return self.normal_start + timedelta(days=self.normal_days)

    @property
    def days(self) -> float:
        return self.learn_days + self.test_days + self.normal_days


QUICK = Layout(
    learn_days=1.5 / 24,
    test_days=1 / 24,
    normal_days=0.5 / 24,
    windows=3,
    services=("api-gateway", "payment-service"),
)


@dataclass
class History:
    layout: Layout
    seed: int
    windows: list[Window]
    features: pa.Table  # telemetry.features rows of the series read, sorted
    records: int = 0
    quarantined: int = 0
    synthesis_calls: int = 0
    metrics: tuple[str, ...] = field(default_factory=tuple)


def grid_metrics(specs: Sequence[SeriesSpec]) -> tuple[str, ...]:
    """The metric names the series read: the history's grid carries those (HistoryConfig.metrics),
    as a history run for detection alone would."""
    return tuple(sorted({s.name for s in specs if s.signal == "metric"}))


def schedule(
    layout: Layout, seed: int, catalogue: ScenarioCatalogue
) -> tuple[ScheduledWindow, ...]:
    """``layout.windows`` windows over the test days: slots of equal length, one window at a
    seeded moment in each; anomaly types in a seeded order (each once before any twice)."""
    rng = random.Random(derive_seed(seed, "scoreboard-windows"))
    by_type: dict[str, list[Scenario]] = {}
    for scenario in eligible(catalogue.all(), layout.services):
        by_type.setdefault(scenario.anomaly_type, []).append(scenario)
    types = sorted(by_type)
    if not types or layout.windows <= 0:
        return ()
    order: list[str] = []
    while len(order) < layout.windows:
        batch = list(types)
        rng.shuffle(batch)
        order.extend(batch)
    slot = layout.test_days * 86_400.0 / layout.windows
    items = []
    for i, anomaly_type in enumerate(order[: layout.windows]):
        scenario = rng.choice(by_type[anomaly_type])
        duration = float(scenario.default_duration_seconds)
        room = max(0.0, slot - duration - MIN_SPACING_SECONDS)
        offset = MIN_SPACING_SECONDS / 2 + rng.uniform(0.0, room)
        # Whole steps: a window's edges fall on bucket edges, as a detector sees them.
        offset = round(offset / layout.resolution_seconds) * layout.resolution_seconds
        start = layout.test_start + timedelta(seconds=i * slot + offset)
        items.append(ScheduledWindow(scenario.id, start, duration, float(rng.choice(INTENSITIES))))
    return tuple(items)


def history_config(layout: Layout, seed: int, metrics: tuple[str, ...]) -> HistoryConfig:
    catalogue = ScenarioCatalogue()
    return HistoryConfig(
        start=layout.start,
        end=layout.end,
        seed=seed,
        resolution_seconds=layout.resolution_seconds,
        services=layout.services,
        metrics=metrics or None,
        schedule=schedule(layout, seed, catalogue),
    )


def _keep(features: pa.Table, specs: Sequence[SeriesSpec]) -> pa.Table:
    """The rows of the (signal, name) pairs the series read, as the reader's scan filter."""
    keep = None
    for signal, name in sorted({(s.signal, s.name) for s in specs}):
        match = pc.and_(pc.equal(features["signal"], signal), pc.equal(features["name"], name))
        keep = match if keep is None else pc.or_(keep, match)
    return features.filter(keep) if keep is not None else features.slice(0, 0)


def generate(
    layout: Layout,
    seed: int,
    specs: Sequence[SeriesSpec],
    bucket_seconds: int = 10,
    progress: bool = False,
) -> History:
    metrics = grid_metrics(specs)
    config = history_config(layout, seed, metrics)
    windows = record_windows(config, seed)
    pool = EntityPool()
    parts: list[pa.Table] = []
    history = History(layout, seed, windows, pa.table({}), metrics=metrics)
    chunks = plan_chunks(config)
    for n, chunk in enumerate(chunks):
        overlapping = [w for w in windows if w.overlaps(chunk.start, chunk.end)]
        records: list[bytes] = []
        for request in chunk_requests(config, chunk, overlapping):
            body = SynthesizeRequest.model_validate(request.to_json())
            batch = synthesize(body, pool)
            records.extend(orjson.dumps(r) for r in batch.records)
            history.synthesis_calls += 1
        typed = type_jsonl(b"\n".join(records))
        history.records += len(records)
        history.quarantined += typed.quarantine.num_rows
        parts.append(_keep(compute_features(typed.tables, bucket_seconds), specs))
        if progress and (n % 20 == 0 or n == len(chunks) - 1):
            print(f"  history: chunk {n + 1}/{len(chunks)}, {history.records} records", flush=True)
    features = pa.concat_tables(parts).sort_by(
        [
            ("service", "ascending"),
            ("signal", "ascending"),
            ("name", "ascending"),
            ("bucket_start", "ascending"),
        ]
    )
    keys = features.select(["service", "signal", "name", "bucket_start"])
    if keys.group_by(keys.column_names).aggregate([]).num_rows != keys.num_rows:
        # A bucket cut between two chunks would be two rows: chunks are whole steps, so never.
        raise RuntimeError("a features bucket was computed from two chunks")
    history.features = features.combine_chunks()
    return history


# --- a cache of the history, for tuning (the same seed and layout give the same history) ----------


def cache_key(layout: Layout, seed: int, specs: Sequence[SeriesSpec], bucket_seconds: int) -> str:
    text = repr((layout, seed, sorted(str(s) for s in specs), bucket_seconds)).encode()
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def load_or_generate(
    layout: Layout,
    seed: int,
    specs: Sequence[SeriesSpec],
    bucket_seconds: int,
    cache: Path | None,
    progress: bool = False,
) -> History:
    if cache is None:
        return generate(layout, seed, specs, bucket_seconds, progress)
    key = cache_key(layout, seed, specs, bucket_seconds)
    table_path, meta_path = cache / f"{key}.parquet", cache / f"{key}.json"
    if table_path.exists() and meta_path.exists():
        meta = orjson.loads(meta_path.read_bytes())
        windows = record_windows(history_config(layout, seed, tuple(meta["metrics"])), seed)
        return History(
            layout,
            seed,
            windows,
            pq.read_table(table_path),
            records=meta["records"],
            quarantined=meta["quarantined"],
            synthesis_calls=meta["synthesis_calls"],
            metrics=tuple(meta["metrics"]),
        )
    history = generate(layout, seed, specs, bucket_seconds, progress)
    cache.mkdir(parents=True, exist_ok=True)
    pq.write_table(history.features, table_path)
    meta_path.write_bytes(
        orjson.dumps(
            {
                "records": history.records,
                "quarantined": history.quarantined,
                "synthesis_calls": history.synthesis_calls,
                "metrics": list(history.metrics),
            }
        )
    )
    return history


def record_windows(config: HistoryConfig, seed: int) -> list[Window]:
    """The planned windows, recorded in a (throw-away) ground truth as a history run does."""
    catalogue = ScenarioCatalogue()
    planned = plan_windows(config, catalogue.get, catalogue.all())  # type: ignore[arg-type]
    emitters = {spec.name: tuple(spec.services) for spec in REGISTRY.values()}
    with tempfile.TemporaryDirectory() as folder:
        truth = GroundTruth(Path(folder) / "ground_truth.jsonl")
        return [
            truth.record_window(
                p.scenario,
                start=p.start,
                end=p.end,
                intensity=p.intensity,
                source=f"history:scoreboard-{seed}",
                scope=scope_for(p.scenario, emitters),
            )
            for p in planned
        ]

"""Detection's progress when the features table gains buckets older than the newest one scored.

The ETL folds the current hours first and older hours later, so history generated on demand, a
backfill or a late hour reaches ``telemetry.features`` after newer buckets that detection has
already scored. A real emulator subprocess, features rows written with pyiceberg as the ETL
writes them, a ``DetectionWorker`` run round by round: the history is read, learned in time order
by a replay (the models equal an uninterrupted run of the library over every bucket), alerts
nothing, keeps a live event open, and counts what it could not learn.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from itertools import pairwise

import pyarrow as pa
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Table

from stages.common import aws, resources
from stages.common.config import Settings
from stages.detection.checkpoint import CheckpointStore
from stages.detection.ensemble import ServiceEnsemble
from stages.detection.progress import Coverage, Progress
from stages.detection.store import EventFilter
from stages.detection.worker import DetectionWorker
from stages.etl.features import ensure_features_table
from stages.etl.tables import open_catalog
from tests.detection.support import drain_alerts, metric_rows

SERVICE = "payment-service"
SERIES = "cpu=metric:cpu.utilization:mean,latency=metric:latency.p95:mean"
START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC).timestamp()
WIDTH = 10


def _values(i: int, spikes: tuple[range, ...] = ()) -> dict[str, float]:
    rng = random.Random(f"{SERVICE}-{i}")
    if any(i in spike for spike in spikes):
        return {"cpu": 97.0, "latency": 950.0}
    return {"cpu": 40.0 + rng.gauss(0, 2.0), "latency": 120.0 + rng.gauss(0, 6.0)}


def _rows(first: int, last: int, spikes: tuple[range, ...] = ()) -> pa.Table:
    points = []
    for i in range(first, last):
        start = datetime.fromtimestamp(START + i * WIDTH, UTC)
        values = _values(i, spikes)
        points += [
            (SERVICE, "cpu.utilization", start, values["cpu"]),
            (SERVICE, "latency.p95", start, values["latency"]),
        ]
    return metric_rows(points, WIDTH)


def _worker(settings: Settings, name: str, **update: object) -> DetectionWorker:
    settings = settings.model_copy(
        update={
            "detection_series": SERIES,
            "detection_checkpoint_seconds": 3600.0,
            "detection_worker_id": name,
            **update,
        }
    )
    catalog = open_catalog(settings, name=f"detection-{name}")
    return DetectionWorker(
        settings, s3=aws.client("s3", settings), sqs=aws.client("sqs", settings), catalog=catalog
    )


def _run(worker: DetectionWorker) -> None:
    """One detection round, the services of the table known to the leases beforehand (as the
    service's lease thread makes them known between rounds)."""
    worker.leases.add_services(worker.reader.discover())
    worker.run_once()


def _table(settings: Settings) -> Table:
    return ensure_features_table(open_catalog(settings, name="writer"))


def _count(worker: DetectionWorker, name: str) -> int:
    return int(worker.counters.snapshot()[name])


def _library(last: int, first: int = 0) -> ServiceEnsemble:
    """An uninterrupted run of the library over buckets first..last-1, in time order."""
    ensemble = ServiceEnsemble(SERVICE, ["cpu", "latency"])
    for i in range(first, last):
        ensemble.update(START + i * WIDTH, _values(i))
    return ensemble


def _models(ensemble: ServiceEnsemble) -> tuple[object, object]:
    state = ensemble.state()
    return state["scorers"], state["multivariate"]


def test_history_behind_the_mark_is_learned_in_time_order(settings: Settings) -> None:
    table = _table(settings)
    table.append(_rows(200, 250))  # the live buckets: scored first
    worker = _worker(settings, "one")
    _run(worker)
    assert _count(worker, "points_scored") == 50
    mark = worker.marks[SERVICE]
    assert mark == START + 249 * WIDTH

    # History reaches the table after them, in two commits, newest hours first (as the ETL
    # folds it). While it keeps coming, it waits; the first round without more replays it.
    waiting = []
    table.append(_rows(100, 200))
    _run(worker)
    waiting.append(worker.status()["services"][SERVICE].get("history_waiting"))
    table.append(_rows(0, 100))
    _run(worker)
    waiting.append(worker.status()["services"][SERVICE].get("history_waiting"))
    scored_while_waiting = _count(worker, "points_scored")
    _run(worker)

    assert _count(worker, "points_scored") == 250  # every bucket, once
    assert waiting == [100, 200] and scored_while_waiting == 50
    assert _count(worker, "replays") == 1
    assert _count(worker, "points_replayed") == 250
    assert _count(worker, "history_skipped") == 0
    assert worker.status()["services"][SERVICE]["history_waiting"] == 0
    assert worker.marks[SERVICE] == mark
    # The models are those of a run that saw every bucket in time order.
    assert _models(worker.ensembles[SERVICE]) == _models(_library(250))

    # The replay was checkpointed with its progress: a restart reads nothing again.
    saved = CheckpointStore(aws.client("s3", settings), "md-models").load(SERVICE)
    assert saved is not None and saved.mark == mark and saved.progress is not None
    assert saved.progress["pending"] == []
    assert saved.progress["seen"] == [[START, START + 250 * WIDTH]]
    worker.leases.release_all()
    again = _worker(settings, "two")
    _run(again)
    assert _count(again, "points_scored") == 0 and _count(again, "replays") == 0

    # New live buckets are scored with the models that learned the history: the same scores
    # as the uninterrupted run (the forest's serialised layout changes on a reload; its
    # scores do not).
    table.append(_rows(250, 260))
    _run(again)
    assert _count(again, "points_scored") == 10
    expected = _library(259).update(START + 259 * WIDTH, _values(259))
    last = again.status()["services"][SERVICE]["last_point"]
    assert last["score"] == expected.decision.score
    assert last["scores"] == {s: r.decision.score for s, r in expected.signals.items()}


def test_an_hour_rewritten_by_the_etl_scores_only_its_new_buckets(settings: Settings) -> None:
    table = _table(settings)
    table.append(_rows(0, 30))
    worker = _worker(settings, "one")
    _run(worker)
    assert _count(worker, "points_scored") == 30
    # The ETL's rebuild of a partition: delete it and append it whole, one bucket more and
    # another value in a bucket already scored (late records).
    rewritten = _rows(0, 31)
    with table.transaction() as tx:
        tx.delete(EqualTo("service", SERVICE))
        tx.append(rewritten)
    _run(worker)
    assert _count(worker, "points_scored") == 31
    assert _count(worker, "replays") == 0
    assert _models(worker.ensembles[SERVICE]) == _models(_library(31))


def test_a_replay_alerts_nothing_and_keeps_the_live_event_open(settings: Settings) -> None:
    live_spike, old_spike = range(240, 250), range(150, 160)
    spikes = (live_spike, old_spike)
    table = _table(settings)
    table.append(_rows(200, 250, spikes))  # ends inside the live spike: its event is open
    worker = _worker(settings, "one")
    _run(worker)
    sqs = aws.client("sqs", settings)
    queue_url = sqs.get_queue_url(QueueName=resources.alert_queues(settings).queue)["QueueUrl"]
    before = drain_alerts(sqs, queue_url)
    live_id = f"{SERVICE}@{round((START + 240 * WIDTH) * 1000)}"
    assert [(m["action"], m["event"]["id"]) for m in before] == [("open", live_id)]

    table.append(_rows(0, 200, spikes))  # history with an incident of its own
    _run(worker)
    _run(worker)
    assert _count(worker, "replays") == 1
    assert drain_alerts(sqs, queue_url) == []
    events = {e["id"]: e for e in worker.events.list(EventFilter())}
    assert events[live_id]["state"] == "open" and events[live_id]["history"] is False
    old_id = f"{SERVICE}@{round((START + 150 * WIDTH) * 1000)}"
    assert events[old_id]["state"] == "closed" and events[old_id]["history"] is True
    assert events[old_id]["end"] == datetime.fromtimestamp(START + 159 * WIDTH, UTC).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")
    assert len(events) == 2

    # The live event goes on: normal buckets close it, with one alert.
    table.append(_rows(250, 265, spikes))
    _run(worker)
    after = drain_alerts(sqs, queue_url)
    assert [(m["action"], m["event"]["id"]) for m in after] == [("close", live_id)]
    assert _count(worker, "events_opened") == 1 and _count(worker, "events_closed") == 1


def test_history_older_than_the_window_is_counted_and_waits_across_a_restart(
    settings: Settings,
) -> None:
    table = _table(settings)
    table.append(_rows(100, 150))
    first = _worker(settings, "one", detection_replay_max_buckets=60)
    _run(first)
    table.append(_rows(0, 100))
    _run(first)  # found, waiting for a round without more history
    assert _count(first, "replays") == 0
    first.flush()  # a clean stop checkpoints what waits
    first.leases.release_all()

    second = _worker(settings, "two", detection_replay_max_buckets=60)
    _run(second)
    assert _count(second, "replays") == 1
    assert _count(second, "points_replayed") == 60  # buckets 90..149
    assert _count(second, "points_scored") == 10  # 90..99: the history inside the window
    assert _count(second, "history_skipped") == 90  # 0..89: counted, not learned
    # The window is replayed from a fresh model.
    assert _models(second.ensembles[SERVICE]) == _models(_library(150, first=90))


def _library_of(buckets: list[int]) -> ServiceEnsemble:
    """An uninterrupted run of the library over the given buckets, in time order."""
    ensemble = ServiceEnsemble(SERVICE, ["cpu", "latency"])
    for i in sorted(buckets):
        ensemble.update(START + i * WIDTH, _values(i))
    return ensemble


def test_a_few_late_buckets_behind_the_mark_are_skipped_without_a_replay(
    settings: Settings,
) -> None:
    """Buckets in which the service had no rows, written late (a late record fills them):
    marked read and counted as skipped, the models as they were, no replay of the window."""
    table = _table(settings)
    table.append(pa.concat_tables([_rows(0, 30), _rows(35, 60)]))  # no rows in 30..34
    worker = _worker(settings, "one")
    _run(worker)
    assert _count(worker, "points_scored") == 55
    live = [*range(0, 30), *range(35, 60)]
    before = _models(worker.ensembles[SERVICE])
    assert before == _models(_library_of(live))

    table.append(_rows(30, 35))  # the gap, filled late
    _run(worker)
    assert _count(worker, "replays") == 0
    assert _count(worker, "history_skipped") == 5
    assert worker.status()["services"][SERVICE]["history_waiting"] == 0
    assert _count(worker, "points_scored") == 55
    assert _models(worker.ensembles[SERVICE]) == before

    # Later rounds neither replay nor read the late buckets again: new live buckets, then the
    # ETL's rewrite of the partition with every bucket and one more.
    table.append(_rows(60, 70))
    _run(worker)
    with table.transaction() as tx:
        tx.delete(EqualTo("service", SERVICE))
        tx.append(_rows(0, 71))
    _run(worker)
    assert _count(worker, "replays") == 0 and _count(worker, "points_replayed") == 0
    assert _count(worker, "history_skipped") == 5
    assert _count(worker, "points_scored") == 66  # 55 + 60..70: each bucket once
    live += range(60, 71)
    assert _models(worker.ensembles[SERVICE]) == _models(_library_of(live))

    worker.flush()
    saved = CheckpointStore(aws.client("s3", settings), "md-models").load(SERVICE)
    assert saved is not None and saved.progress is not None
    assert saved.progress["seen"] == [[START, START + 71 * WIDTH]]
    assert saved.progress["pending"] == []


def test_more_late_buckets_or_older_ones_are_still_replayed(settings: Settings) -> None:
    """31 buckets just behind the mark, or 10 older than an hour behind it, are history: they
    wait for a replay and are learned in time order."""
    table = _table(settings)
    table.append(pa.concat_tables([_rows(400, 420), _rows(451, 470)]))  # no rows in 420..450
    worker = _worker(settings, "one")
    _run(worker)
    table.append(_rows(0, 10))  # old: 460 buckets behind the mark
    _run(worker)
    assert worker.status()["services"][SERVICE]["history_waiting"] == 10
    _run(worker)
    assert _count(worker, "replays") == 1
    table.append(_rows(420, 451))  # 31 buckets, just behind the mark
    _run(worker)
    assert worker.status()["services"][SERVICE]["history_waiting"] == 31
    _run(worker)
    assert _count(worker, "replays") == 2
    assert _count(worker, "history_skipped") == 0
    assert _count(worker, "points_scored") == 80  # 39 live + 10 + 31, each once
    everything = [*range(0, 10), *range(400, 470)]
    assert _models(worker.ensembles[SERVICE]) == _models(_library_of(everything))


def test_coverage_holds_exactly_the_buckets_added() -> None:
    """Against a plain set of bucket numbers, on random adds (overlapping, adjacent, apart)."""
    for trial in range(200):
        rng = random.Random(trial)
        coverage, truth = Coverage(), set()
        for _ in range(rng.randint(0, 60)):
            first, count = rng.randint(0, 40), rng.randint(1, 4)
            coverage.add(first * 10.0, (first + count) * 10.0)
            truth.update(range(first, first + count))
        assert {b for b in range(-2, 50) if b * 10.0 in coverage} == truth
        assert coverage.buckets(10) == len(truth)
        ranges = coverage.to_list()
        assert all(a[1] < b[0] for a, b in pairwise(ranges)), ranges
        assert Coverage(ranges) == coverage


def test_a_checkpoint_without_progress_has_read_every_bucket_up_to_its_mark() -> None:
    progress = Progress.restore(1000.0, None, 10)
    assert 1000.0 in progress.seen and 0.0 in progress.seen and 1010.0 not in progress.seen
    assert progress.sequence is None and not progress.pending
    assert Progress.restore(None, None, 10).seen == Coverage()
    saved = Progress(7, Coverage([(0.0, 20.0)]), Coverage([(0.0, 10.0)])).to_dict()
    assert Progress.restore(10.0, saved, 10) == Progress(
        7, Coverage([(0.0, 20.0)]), Coverage([(0.0, 10.0)])
    )

"""The detection service as it runs: a real emulator subprocess, features rows written with
pyiceberg, a real ``python -m stages.detection`` process on a free port, SQS read with boto3.

One scenario (module fixture) runs the process twice: 170 buckets (normal, a 10-bucket spike on
``payment-service``, normal), a SIGKILL, a restart, 20 more normal buckets. The tests check what
a user would: the events, the SQS messages, the counters, the scores after the restart against
an uninterrupted run of the library, the lake table, the filters and the feedback.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import orjson
import pyarrow as pa
import pytest

from stages.common import aws, resources
from stages.common.config import Settings
from stages.detection.alerts import Dispatcher, Outbox, message
from stages.detection.checkpoint import CheckpointConflict, CheckpointStore
from stages.detection.ensemble import ServiceEnsemble
from stages.detection.events_table import ANOMALIES_TABLE
from stages.detection.reader import parse_series, read_columns
from stages.etl.features import ARROW_SCHEMA, ensure_features_table
from stages.etl.tables import open_catalog
from tests.detection.support import cpu_and_latency, drain_alerts, metric_rows, prometheus_value
from tests.support.processes import Process, base_env, free_port, start_emulator, wait_http_ok

SERVICE = "payment-service"
QUIET = "auth-service"
SERIES = "cpu=metric:cpu.utilization:mean,latency=metric:latency.p95:mean"
START = datetime(2026, 12, 1, 6, 0, tzinfo=UTC).timestamp()
WIDTH = 10
SPIKE = range(150, 160)
FIRST_RUN = 170
TOTAL = 190
AFTER = 195  # buckets scored without an event change, checkpointed at the clean stop


def _values(i: int, service: str) -> dict[str, float]:
    return cpu_and_latency(i, service, spiked=service == SERVICE and i in SPIKE)


def _rows(first: int, last: int) -> pa.Table:
    points = []
    for service in (SERVICE, QUIET):
        for i in range(first, last):
            start = datetime.fromtimestamp(START + i * WIDTH, UTC)
            values = _values(i, service)
            points += [
                (service, "cpu.utilization", start, values["cpu"]),
                (service, "latency.p95", start, values["latency"]),
                # not a configured series: never read
                (service, "memory.utilization", start, 99.0),
            ]
    return metric_rows(points, WIDTH)


@dataclass
class Scenario:
    settings: Settings
    endpoint: str
    logs: Path
    port: int
    queue_url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    first_metrics: str = ""
    second_metrics: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    marks_before_stop: dict[str, Any] = field(default_factory=dict)
    marks_after_stop: dict[str, Any] = field(default_factory=dict)
    third_metrics: str = ""
    webhook: list[dict[str, Any]] = field(default_factory=list)
    third_messages: list[dict[str, Any]] = field(default_factory=list)
    outbox_left: list[str] = field(default_factory=list)


class _Webhook(BaseHTTPRequestHandler):
    """A chat tool's incoming webhook: records each JSON body it is sent."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(
            {"type": self.headers.get("Content-Type"), **orjson.loads(self.rfile.read(length))}
        )
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def _start_detection(endpoint: str, port: int, logs: Path, run: int, webhook: str) -> Process:
    env = base_env(
        endpoint,
        ALERT_WEBHOOK_URL=webhook,
        DETECTION_PORT=str(port),
        DETECTION_INTERVAL_SECONDS="0.5",
        DETECTION_SERIES=SERIES,
        # Checkpoints only at event changes and at the stop, within the test's time.
        DETECTION_CHECKPOINT_SECONDS="3600",
        # The restarted process has another owner id: the killed one's leases expire first.
        DETECTION_LEASE_SECONDS="6",
        RUN_DIR=str(logs / "run"),
        DATA_DIR=str(logs / "data"),
    )
    proc = Process(f"detection-{run}", [sys.executable, "-m", "stages.detection"], env, logs)
    wait_http_ok(f"http://127.0.0.1:{port}/health", proc, timeout=60)
    return proc


def _wait_mark(url: str, proc: Process, bucket: int, timeout: float = 120.0) -> dict[str, Any]:
    wanted = datetime.fromtimestamp(START + bucket * WIDTH, UTC).isoformat(timespec="milliseconds")
    wanted = wanted.replace("+00:00", "Z")
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert proc.alive(), proc.log_tail()
        status = httpx.get(f"{url}/api/status", timeout=5).json()
        services = status["services"]
        if all(services.get(s, {}).get("mark") == wanted for s in (SERVICE, QUIET)):
            return status
        time.sleep(0.2)
    raise AssertionError(f"mark {wanted} not reached: {status}\n{proc.log_tail()}")


def _delivered(metrics: str) -> bool:
    """A transition went to all three targets (SQS, the lake, the webhook), none is pending."""
    sent = prometheus_value(metrics, "detection_alerts_sent_total")
    return sent >= 3 and prometheus_value(metrics, "detection_alerts_pending") == 0


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    logs = tmp_path_factory.mktemp("detection-logs")
    emulator, endpoint = start_emulator(logs)
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    webhook = f"http://127.0.0.1:{hook.server_address[1]}/hooks/alerts"
    try:
        settings = Settings(aws_endpoint_url=endpoint)
        table = ensure_features_table(open_catalog(settings, name="writer"))
        table.append(_rows(0, FIRST_RUN))
        sqs = aws.client("sqs", settings)
        queue_url = sqs.get_queue_url(QueueName=resources.alert_queues(settings).queue)["QueueUrl"]
        port = free_port()
        state = Scenario(settings, endpoint, logs, port, queue_url, webhook=_Webhook.received)
        state.url = url = f"http://127.0.0.1:{port}"

        first = _start_detection(endpoint, port, logs, 1, webhook)
        try:
            _wait_mark(url, first, FIRST_RUN - 1)
            # Delivery follows the checkpoint within the same round.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state.first_metrics = httpx.get(f"{url}/metrics").text
                if _delivered(state.first_metrics):
                    break
                time.sleep(0.2)
            state.messages += drain_alerts(sqs, queue_url)
        finally:
            first.kill()  # a crash: no shutdown code runs

        table.append(_rows(FIRST_RUN, TOTAL))
        second = _start_detection(endpoint, port, logs, 2, webhook)
        try:
            state.status = _wait_mark(url, second, TOTAL - 1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state.second_metrics = httpx.get(f"{url}/metrics").text
                if _delivered(state.second_metrics):
                    break
                time.sleep(0.2)
            state.messages += drain_alerts(sqs, queue_url)

            # Normal buckets change no event: they are checkpointed only by the clean stop.
            table.append(_rows(TOTAL, AFTER))
            _wait_mark(url, second, AFTER - 1)
            time.sleep(1.0)  # a round or two more: still no checkpoint
            state.marks_before_stop = _checkpoint_marks(settings)
        finally:
            second.terminate()
        state.marks_after_stop = _checkpoint_marks(settings)

        # What a crash leaves in the outbox: an alert its checkpoint holds (delivered at the
        # next start) and one of a checkpoint never written (dropped: rescoring recreates it).
        outbox = Outbox(aws.client("s3", settings), "md-models")
        generation = state.marks_after_stop[SERVICE][0]
        outbox.put("sqs", SERVICE, generation, message("update", _event(f"{SERVICE}@1")))
        outbox.put("sqs", SERVICE, generation + 1, message("open", _event(f"{SERVICE}@2")))

        third = _start_detection(endpoint, port, logs, 3, webhook)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state.third_metrics = httpx.get(f"{url}/metrics").text
                if prometheus_value(state.third_metrics, "detection_alerts_sent_total") >= 1:
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # a few rounds more, with nothing new to score
            state.third_metrics = httpx.get(f"{url}/metrics").text
            state.third_messages = drain_alerts(sqs, queue_url)
            state.outbox_left = [e.message["dedup_id"] for e in outbox.pending()]
            yield state
        finally:
            third.stop()
    finally:
        hook.shutdown()
        emulator.stop()


def _checkpoint_marks(settings: Settings) -> dict[str, Any]:
    store = CheckpointStore(aws.client("s3", settings), "md-models")
    marks = {}
    for service in store.services():
        saved = store.load(service)
        assert saved is not None
        marks[service] = (saved.generation, saved.mark)
    return marks


def _start_of(bucket: int) -> float:
    return START + bucket * WIDTH


def _event_id() -> str:
    # The first point of the spike opens the incident: ids are "<service>@<start in ms>".
    return f"{SERVICE}@{round((START + SPIKE.start * WIDTH) * 1000)}"


def test_a_spike_opens_one_event_and_later_normal_buckets_resolve_it(scenario: Scenario) -> None:
    events = httpx.get(f"{scenario.url}/api/anomalies").json()
    assert [e["id"] for e in events] == [_event_id()]
    (event,) = events
    assert event["service"] == SERVICE
    assert event["state"] == "closed"
    assert set(event["signals"]) == {"cpu", "latency"}
    assert event["start"] == "2026-12-01T06:25:00.000Z"
    assert event["end"] == "2026-12-01T06:26:30.000Z"  # the last spike bucket
    assert event["peak_score"] >= 0.5
    assert event["voters"]
    assert event["severity"] in {"low", "medium", "high", "critical"}

    actions = [m["action"] for m in scenario.messages]
    assert actions.count("open") == 1, actions
    assert actions.count("close") == 1, actions
    assert actions[0] == "open" and actions[-1] == "close"
    for item in scenario.messages:
        assert item["event"]["id"] == _event_id()
        assert item["_attributes"]["MessageGroupId"] == _event_id()
        assert item["_attributes"]["MessageDeduplicationId"] == f"{_event_id()}:{item['action']}"
        assert SERVICE in item["text"]


def test_the_webhook_gets_each_transition_as_chat_text(scenario: Scenario) -> None:
    texts = [item["text"] for item in scenario.webhook]
    assert [item["type"] for item in scenario.webhook] == ["application/json"] * len(texts)
    assert set(scenario.webhook[0]) == {"type", "text"}
    assert sum("anomaly opened on payment-service" in t for t in texts) == 1, texts
    assert sum("anomaly resolved on payment-service" in t for t in texts) == 1, texts
    assert all(_event_id() in t for t in texts)


def test_the_restart_rescoring_nothing_and_resuming_the_model(scenario: Scenario) -> None:
    # The first process scored 170 buckets of each service; the restarted one only the 20 new.
    assert (
        prometheus_value(scenario.first_metrics, "detection_points_scored_total") == 2 * FIRST_RUN
    )
    assert prometheus_value(scenario.second_metrics, "detection_points_scored_total") == 2 * (
        TOTAL - FIRST_RUN
    )
    assert prometheus_value(scenario.first_metrics, "detection_events_opened_total") == 1
    assert prometheus_value(scenario.second_metrics, "detection_events_opened_total") == 0
    assert prometheus_value(scenario.second_metrics, "detection_events_closed_total") == 1
    assert prometheus_value(scenario.second_metrics, "detection_alerts_failed_total") == 0

    # An uninterrupted run of the library over the same 190 buckets scores the last one the
    # same, to the last bit: the model resumed from the checkpoint instead of relearning.
    for service in (SERVICE, QUIET):
        ensemble = ServiceEnsemble(service, ["cpu", "latency"])
        for i in range(TOTAL):
            point = ensemble.update(START + i * WIDTH, _values(i, service))
        last = scenario.status["services"][service]["last_point"]
        assert last["score"] == point.decision.score
        assert last["scores"] == {s: r.decision.score for s, r in point.signals.items()}


def test_events_reach_the_lake_table(scenario: Scenario) -> None:
    table = open_catalog(scenario.settings, name="reader").load_table(ANOMALIES_TABLE)
    assert table.location() == "s3://md-models/telemetry/anomalies"
    rows = table.scan().to_arrow().to_pylist()
    assert sorted((r["event_id"], r["action"]) for r in rows) == sorted(
        (_event_id(), m["action"]) for m in scenario.messages
    )
    closed = next(r for r in rows if r["action"] == "close")
    assert closed["service"] == SERVICE and closed["state"] == "closed"


def test_filters(scenario: Scenario) -> None:
    url = f"{scenario.url}/api/anomalies"
    assert len(httpx.get(url, params={"service": SERVICE}).json()) == 1
    assert httpx.get(url, params={"service": QUIET}).json() == []
    assert len(httpx.get(url, params={"state": "closed"}).json()) == 1
    assert httpx.get(url, params={"state": "open"}).json() == []
    # Time: the event spans 06:25:00-06:26:30.
    assert httpx.get(url, params={"to": "2026-12-01T06:24:59Z"}).json() == []
    assert len(httpx.get(url, params={"to": "2026-12-01T06:25:00Z"}).json()) == 1
    assert httpx.get(url, params={"from": "2026-12-01T06:26:31Z"}).json() == []
    assert len(httpx.get(url, params={"from": "2026-12-01T06:26:00Z"}).json()) == 1
    bad = httpx.get(url, params={"state": "pending"})
    assert bad.status_code == 422 and "state" in bad.text
    assert httpx.get(url, params={"from": "yesterday"}).status_code == 422
    # Seconds since the epoch are not a time here: pydantic alone would read "-28" as 1969.
    assert httpx.get(url, params={"to": "-28"}).status_code == 422


def test_feedback_is_stored_with_the_event(scenario: Scenario) -> None:
    one = f"{scenario.url}/api/anomalies/{quote(_event_id(), safe='')}"
    assert httpx.get(one).json()["feedback"] is None
    answer = httpx.post(f"{one}/feedback", json={"verdict": "true_positive", "note": "cpu spike"})
    assert answer.status_code == 200, answer.text
    stored = httpx.get(one).json()["feedback"]
    assert stored["verdict"] == "true_positive" and stored["note"] == "cpu spike"

    missing = httpx.post(
        f"{scenario.url}/api/anomalies/nope@1/feedback", json={"verdict": "false_positive"}
    )
    assert missing.status_code == 404 and missing.json()["error"] == "event_not_found"
    assert httpx.get(f"{scenario.url}/api/anomalies/nope@1").status_code == 404
    wrong = httpx.post(f"{one}/feedback", json={"verdict": "maybe"})
    assert wrong.status_code == 422 and "verdict" in wrong.text
    extra = httpx.post(f"{one}/feedback", json={"verdict": "true_positive", "x": 1})
    assert extra.status_code == 422

    # Durable: in the models bucket, where a restarted service loads it from.
    s3 = aws.client("s3", scenario.settings)
    listed = s3.list_objects_v2(Bucket="md-models", Prefix="detection/feedback/")
    assert listed["KeyCount"] == 1


def test_no_label_field_is_read() -> None:
    columns = read_columns(parse_series(Settings().detection_series))
    assert {"is_anomaly", "scenario_id", "anomaly_type", "anomaly_score"}.isdisjoint(columns)
    assert set(columns) <= {f.name for f in ARROW_SCHEMA}


@pytest.mark.parametrize(
    "text",
    [
        "cpu",
        "cpu=metric:cpu.utilization",
        "cpu=trace:x:mean",
        "cpu=metric:x:median",
        "9=metric:x:mean",
    ],
)
def test_bad_series_settings_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="DETECTION_SERIES"):
        parse_series(text)


def _event(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "service": event_id.split("@")[0],
        "signals": ["cpu"],
        "start": "2026-12-01T00:00:00.000Z",
        "end": None,
        "last_anomalous": "2026-12-01T00:00:30.000Z",
        "peak_score": 0.8,
        "peak_at": "2026-12-01T00:00:10.000Z",
        "voters": ["iqr"],
        "severity": "high",
        "state": "open",
        "points": 3,
    }


def test_an_alert_that_cannot_be_delivered_is_kept_then_dead_lettered(scenario: Scenario) -> None:
    s3 = aws.client("s3", scenario.settings)
    outbox = Outbox(s3, "md-models")
    outbox.put("sqs", "x", 1, message("open", _event("x@1")))

    def refuse(batch: list[dict[str, Any]]) -> None:
        raise ConnectionError("queue unreachable")

    dispatcher = Dispatcher(
        outbox, {"sqs": refuse}, attempts=2, dead_letter_after=2, backoff_base=0.0, backoff_cap=0.0
    )
    mine = [e for e in outbox.pending() if e.message["event"]["id"] == "x@1"]
    first = dispatcher.deliver(mine)["sqs"]
    assert (first.sent, first.failed, first.dead_lettered) == (0, 1, 0)
    kept = [e for e in outbox.pending() if e.message["event"]["id"] == "x@1"]
    assert len(kept) == 1 and kept[0].failed_rounds == 1
    assert "queue unreachable" in (kept[0].last_error or "")
    second = dispatcher.deliver(kept)["sqs"]
    assert (second.sent, second.failed, second.dead_lettered) == (0, 1, 1)
    assert not [e for e in outbox.pending() if e.message["event"]["id"] == "x@1"]
    dead = s3.list_objects_v2(Bucket="md-models", Prefix="detection/dead-letter/sqs/")
    assert dead["KeyCount"] == 1


def test_a_clean_stop_checkpoints_what_was_scored_since_and_a_restart_scores_nothing_again(
    scenario: Scenario,
) -> None:
    # The second process checkpointed at the event's close (bucket 171), not after each round.
    for service in (SERVICE, QUIET):
        generation, mark = scenario.marks_before_stop[service]
        assert mark < _start_of(AFTER - 1)
        assert scenario.marks_after_stop[service] == (generation + 1, _start_of(AFTER - 1))
    assert prometheus_value(scenario.third_metrics, "detection_points_scored_total") == 0


def test_a_start_delivers_checkpointed_alerts_and_drops_the_others(scenario: Scenario) -> None:
    # Only the planted alert whose checkpoint exists: nothing of the real event is sent again.
    assert [m["dedup_id"] for m in scenario.third_messages] == [f"{SERVICE}@1:update"]
    assert prometheus_value(scenario.third_metrics, "detection_alerts_sent_total") == 1
    assert scenario.outbox_left == []


def test_a_second_writer_of_a_generation_is_refused(scenario: Scenario) -> None:
    store = CheckpointStore(aws.client("s3", scenario.settings), "md-models")
    store.save("race-service", 1, 10.0, {"x": 1})
    with pytest.raises(CheckpointConflict):
        store.save("race-service", 1, 20.0, {"x": 2})
    saved = store.load("race-service")
    assert saved is not None and (saved.generation, saved.mark, saved.state) == (1, 10.0, {"x": 1})

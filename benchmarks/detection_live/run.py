"""One live run: a private fleet, a learned history, live traffic, triggers, and what each
trigger's alert took."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, In

from benchmarks.detection_live.probes import (
    Alert,
    EventsWatcher,
    QueueWatcher,
    epoch,
    first_commit_with,
)
from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.lakehouse import FEATURES_TABLE, open_catalog
from tests.ops.support import FleetRun, private_fleet

# Anomaly types the scoreboard finds (observable in the features: each moves a series detection
# reads) and whose effect starts with the window; memory_leak, a slow ramp, is left out.
TRIGGER_TYPES = (
    "cpu_spike",
    "api_errors",
    "network_latency",
    "traffic_surge",
    "circuit_breaker_open",
    "gc_pressure",
    "container_oom",
    "connection_timeout",
)
# The scoreboard's three services: the entry point, one with a database, one with a database,
# a queue and the business metrics.
SERVICES = ("payment-service", "api-gateway", "account-service")
# The Stage 00 path, the raw zone and the ETL; detection is started once the history is in the
# features table (see Options.history_minutes).
FLEET = ("scenario-orchestrator", "kinesis-consumer", "etl")
ORCHESTRATOR = "scenario-orchestrator"
ETL_FEATURE_FIGURES = ("late_records", "buckets_written", "partitions_written", "rebuild_failures")


@dataclass(frozen=True)
class Options:
    triggers: int = 6
    services: tuple[str, ...] = SERVICES
    types: tuple[str, ...] = TRIGGER_TYPES
    # History generated (and folded into features) before detection starts, so the detectors
    # have learned when the first live bucket comes: a running detection service does not go
    # back for buckets older than its progress.
    history_minutes: float = 60.0
    history_resolution_seconds: float = 2.0
    rate: int = 150  # live records/s over the services
    settle_seconds: float = 120.0  # live traffic scored before the first trigger
    intensity: float = 90.0
    duration_seconds: float = 60.0
    timeout_seconds: float = 240.0  # window start -> no open alert by then: a miss
    gap_seconds: float = 20.0  # after a window's end, before the next trigger
    seed: int = 1
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Trigger:
    anomaly_type: str
    service: str
    window_id: str
    start: float  # the ground-truth window's start (epoch seconds)
    planned_end: float
    ramp_seconds: float
    opened: Alert | None = None

    def matches(self, alert: Alert, width: float) -> bool:
        """An open alert of this window: its service, its event starting no earlier than the
        bucket holding the window's start and no later than the window's end plus the time the
        events take to open."""
        if alert.action != "open" or alert.service != self.service:
            return False
        start = float(alert.event.get("start_epoch") or epoch(alert.event["start"]))
        return self.start - width <= start <= self.planned_end + 120.0


class LiveRun:
    def __init__(self, options: Options, root: Path, log: Any = print) -> None:
        self.options = options
        self.log = log
        shutil.rmtree(root, ignore_errors=True)
        self.fleet: FleetRun = private_fleet(root, **options.env)
        self.endpoint = f"http://127.0.0.1:{self.fleet.emulator_port}"
        self.settings = Settings(aws_endpoint_url=self.endpoint, **_settings_from(options.env))
        self.width = float(self.settings.features_bucket_seconds)
        self.http = httpx.Client(timeout=30)
        self.marks: dict[str, float] = {}
        self.catalog: Any = None

    # --- the fleet ------------------------------------------------------------------------
    def start(self, *names: str) -> float:
        began = time.monotonic()
        result = self.fleet.cli("start", *names, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"fleet start {' '.join(names)} failed:\n{result.stdout}\n"
                               f"{result.stderr}")  # fmt: skip
        return time.monotonic() - began

    def stop(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.http.post(self.url(ORCHESTRATOR) + "/api/continuous/stop")
        self.fleet.stop_all()
        self.http.close()

    def url(self, service: str) -> str:
        return self.fleet.url(service)

    def post(self, service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(self.url(service) + path, json=body)
        if answer.status_code >= 400:
            raise RuntimeError(f"POST {service}{path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def get(self, service: str, path: str) -> Any:
        answer = self.http.get(self.url(service) + path)
        answer.raise_for_status()
        return answer.json()

    # --- warm-up --------------------------------------------------------------------------
    def history(self, end: float) -> dict[str, Any]:
        """Labelled-free history of the services up to ``end``, through the real path; returns
        the finished run."""
        o = self.options
        start = end - o.history_minutes * 60
        body = {
            "start": _iso(start),
            "end": _iso(end),
            "resolution_seconds": o.history_resolution_seconds,
            "services": list(o.services),
            "seed": o.seed,
        }
        run = self.post(ORCHESTRATOR, "/api/history", body)
        deadline = time.monotonic() + 900
        while run["status"] == "running":
            if time.monotonic() > deadline:
                raise RuntimeError(f"history still running after 900 s: {run}")
            time.sleep(1.0)
            run = self.get(ORCHESTRATOR, f"/api/history/{run['id']}")
        if run["status"] != "completed":
            raise RuntimeError(f"history {run['status']}: {run['errors']}")
        self.marks["history_start"], self.marks["history_end"] = start, end
        return run

    def start_live(self) -> dict[str, Any]:
        o = self.options
        body = {
            "interval_seconds": 1.0,
            "logs_per_interval": o.rate,
            "services": list(o.services),
            "seed": o.seed,
        }
        return self.post(ORCHESTRATOR, "/api/continuous/start", body)

    def wait_history_features(self, timeout: float = 600.0) -> float:
        """Seconds until the features table holds every history bucket of every service (the
        ETL folds the history and writes its closed buckets)."""
        began = time.monotonic()
        start, end = self.marks["history_start"], self.marks["history_end"]
        expected = round((end - start) / self.width)
        self.catalog = open_catalog(self.settings, name="ttd-live")
        last: dict[str, int] = {}
        while time.monotonic() - began < timeout:
            last = self.history_buckets(start, end)
            if all(last.get(s, 0) >= expected for s in self.options.services):
                return time.monotonic() - began
            time.sleep(2.0)
        raise RuntimeError(f"history not in the features table after {timeout:.0f} s: "
                           f"{last} of {expected} buckets per service")  # fmt: skip

    def history_buckets(self, start: float, end: float) -> dict[str, int]:
        try:
            table = self.catalog.load_table(FEATURES_TABLE)
        except NoSuchTableError:
            return {}
        since = datetime.fromtimestamp(start, UTC)
        rows = table.scan(
            row_filter=And(
                And(In("service", set(self.options.services)), EqualTo("signal", "metric")),
                GreaterThanOrEqual("dt", since.date().isoformat()),
            ),
            selected_fields=("service", "bucket_start"),
        ).to_arrow()
        stamps = pc.divide(
            rows["bucket_start"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), 1_000_000
        ).to_pylist()
        seen: dict[str, set[int]] = {}
        for service, stamp in zip(rows["service"].to_pylist(), stamps, strict=True):
            if start <= stamp < end:
                seen.setdefault(service, set()).add(stamp)
        return {service: len(buckets) for service, buckets in seen.items()}

    def wait_detection_past(self, mark: float, what: str, timeout: float = 600.0) -> float:
        """Seconds until detection's progress mark of every service is at ``mark`` or later."""
        began = time.monotonic()
        status: dict[str, Any] = {}
        while time.monotonic() - began < timeout:
            status = self.get("detection", "/api/status")
            marks = {s: v.get("mark") for s, v in status.get("services", {}).items()}
            if all(marks.get(s) and epoch(marks[s]) >= mark for s in self.options.services):
                return time.monotonic() - began
            time.sleep(1.0)
        raise RuntimeError(f"detection did not catch up with {what} in {timeout:.0f} s: "
                           f"{status.get('services')}")  # fmt: skip

    # --- the triggers ---------------------------------------------------------------------
    def trigger(self, index: int) -> Trigger:
        o = self.options
        service = o.services[index % len(o.services)]
        anomaly_type = o.types[index % len(o.types)]
        body = {
            "anomaly_type": anomaly_type,
            "target": service,
            "intensity": o.intensity,
            "duration_seconds": o.duration_seconds,
        }
        window = self.post(ORCHESTRATOR, "/api/anomaly/trigger", body)["window"]
        return Trigger(
            anomaly_type,
            service,
            window["id"],
            epoch(window["start"]),
            epoch(window["planned_end"]),
            float(window.get("ramp_seconds") or 0.0),
        )

    def run_triggers(self, queue: QueueWatcher) -> list[Trigger]:
        o = self.options
        done: list[Trigger] = []
        for index in range(o.triggers):
            service = o.services[index % len(o.services)]
            # One incident at a time per service: an event still open would take the next
            # window's anomaly in (hysteresis), and its open alert would never come.
            deadline = time.monotonic() + 300
            while service in queue.open_services() and time.monotonic() < deadline:
                time.sleep(1.0)
            trigger = self.trigger(index)
            self.log(f"  trigger {index + 1}/{o.triggers}: {trigger.anomaly_type} on "
                     f"{trigger.service} at {_iso(trigger.start)}")  # fmt: skip
            while time.time() < trigger.start + o.timeout_seconds:
                trigger.opened = next(
                    (a for a in queue.snapshot() if trigger.matches(a, self.width)), None
                )
                if trigger.opened is not None:
                    break
                time.sleep(0.5)
            if trigger.opened is None:
                self.log("    no open alert (a miss)")
            else:
                took = trigger.opened.received_at - trigger.start
                self.log(f"    open alert after {took:.1f} s")
            done.append(trigger)
            wait = trigger.planned_end + o.gap_seconds - time.time()
            if wait > 0 and index + 1 < o.triggers:
                time.sleep(wait)
        return done

    # --- the whole run --------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        o = self.options
        timings: dict[str, float] = {}
        timings["fleet_start_s"] = self.start(*FLEET)
        self.log(f"fleet up in {timings['fleet_start_s']:.1f} s; history: "
                 f"{o.history_minutes:g} min of {', '.join(o.services)}")  # fmt: skip
        # The history ends on a bucket boundary reached just now, and live traffic starts as
        # soon as the history is in, so the gap between them is the history's own few seconds.
        # A history ending at the last boundary passed left up to a whole bucket empty: a real
        # traffic dip, on which a CI run's detection opened an alert just before its trigger,
        # which then fell into that open event. (The history goes first: its buckets are
        # written when it is folded, before any live bucket of the same hour.)
        boundary = _floor(time.time(), self.width) + self.width
        time.sleep(max(0.0, boundary - time.time()))
        began = time.monotonic()
        history = self.history(end=boundary)
        timings["history_s"] = time.monotonic() - began
        live = self.start_live()
        self.marks["live_start"] = time.time()
        timings["history_features_s"] = self.wait_history_features()
        timings["detection_start_s"] = self.start("detection")
        queue_url = aws.client("sqs", self.settings).get_queue_url(
            QueueName=resources.alert_queues(self.settings).queue
        )["QueueUrl"]
        queue = QueueWatcher(aws.client("sqs", self.settings), queue_url)
        queue.start()
        events = EventsWatcher(self.url("detection"))
        events.start()
        try:
            timings["detection_catch_up_s"] = self.wait_detection_past(
                self.marks["history_end"] - self.width, "the history"
            )
            # The first live buckets scored too, so that an event the seam between history and
            # live traffic may open (counted as a false alarm) is open
            # before the first trigger, which then waits for it to close (run_triggers): an
            # event opened just after a trigger takes its anomaly in and its open alert never
            # comes (a CI run's quick mode, whose 15 s settle ended before the seam was scored).
            timings["live_scored_s"] = self.wait_detection_past(
                self.marks["live_start"] + 3 * self.width, "the first live buckets"
            )
            self.log(f"detection caught up with the history in "
                     f"{timings['detection_catch_up_s']:.1f} s; {o.settle_seconds:g} s of live "
                     "traffic before the first trigger")  # fmt: skip
            time.sleep(o.settle_seconds)
            self.marks["triggers_start"] = time.time()
            # Late records of the live traffic only: the history's folds may add some of their own.
            late_before = self.get("etl", "/api/etl/status")["features"]["late_records"]
            produced_before = self.get(ORCHESTRATOR, "/api/continuous/stats")["records_produced"]
            triggers = self.run_triggers(queue)
            self.marks["triggers_end"] = time.time()
            time.sleep(3.0)  # the events API polls each second
        finally:
            queue.stop()
            events.stop()
        etl = self.get("etl", "/api/etl/status")
        detection = self.get("detection", "/api/status")
        continuous = self.get(ORCHESTRATOR, "/api/continuous/stats")
        features = self.catalog.load_table(FEATURES_TABLE)
        rows = [self.measure(t, features, events) for t in triggers]
        alerts = queue.snapshot()
        opens = [a for a in alerts if a.action == "open"]
        matched = {t.opened.event_id for t in triggers if t.opened is not None}
        false_opens = [a for a in opens if a.event_id not in matched]
        return {
            "options": {k: v for k, v in o.__dict__.items()},
            "settings": effective_settings(self.settings),
            "timings": {k: round(v, 1) for k, v in timings.items()},
            "history": {k: history[k] for k in ("records_accepted", "records_per_second")},
            "live": {
                "requested_rate": live.get("requested_rate"),
                "measured_rate": continuous.get("measured_rate"),
                "records_produced": continuous.get("records_produced"),
                "records_failed": continuous.get("records_failed"),
                "can_keep_up": continuous.get("can_keep_up"),
                "seconds": round(time.time() - self.marks["live_start"], 1),
            },
            "triggers": rows,
            "false_alarms": [
                {
                    "service": a.service,
                    "event_start": a.event.get("start"),
                    "received": _iso(a.received_at),
                    "before_first_trigger": a.received_at < self.marks["triggers_start"],
                }
                for a in false_opens
            ],
            "alerts": {
                action: sum(1 for a in alerts if a.action == action)
                for action in ("open", "update", "close")
            },
            "etl_features": {k: etl["features"][k] for k in ETL_FEATURE_FIGURES},
            "live_late_records": {
                # From the first trigger to the end: live traffic only, its records produced.
                "late_records": etl["features"]["late_records"] - late_before,
                "records_produced": continuous["records_produced"] - produced_before,
            },
            "etl_lag_seconds": etl.get("lag_seconds"),
            "detection_counters": detection.get("counters", {}),
            "watch_errors": (queue.errors + events.errors)[:5],
        }

    def measure(self, t: Trigger, features: Any, events: EventsWatcher) -> dict[str, Any]:
        row: dict[str, Any] = {
            "anomaly_type": t.anomaly_type,
            "service": t.service,
            "window_id": t.window_id,
            "window_start": _iso(t.start),
            "ramp_seconds": t.ramp_seconds,
            "detected": t.opened is not None,
        }
        if t.opened is None:
            return row
        a = t.opened
        opening = epoch(a.event["last_anomalous"])  # the bucket whose score opened the event
        bucket_end = opening + self.width
        written = first_commit_with(features, t.service, opening)
        seen = events.first_seen.get(a.event_id)
        row.update(
            event_id=a.event_id,
            event_start=a.event.get("start"),
            voters=a.event.get("voters"),
            signals=a.event.get("signals"),
            ttd_s=round(a.received_at - t.start, 1),
            api_ttd_s=round(seen - t.start, 1) if seen is not None else None,
            split={
                # window start -> end of the bucket that opened the event (the scoreboard's)
                "event_time_s": round(bucket_end - t.start, 1),
                # bucket end -> the features commit that held it (watermark, fold, features)
                "to_features_s": _round(written - bucket_end if written else None),
                # that commit -> the alert sent (detection's interval and round)
                "to_alert_sent_s": _round(a.sent_at - written if written else None),
                # sent -> received by the benchmark
                "delivery_s": round(a.received_at - a.sent_at, 1),
            },
        )
        return row


def effective_settings(settings: Settings) -> dict[str, Any]:
    return {
        "features_bucket_seconds": settings.features_bucket_seconds,
        "features_allowed_lateness_seconds": settings.features_allowed_lateness_seconds,
        "etl_interval_seconds": settings.etl_interval_seconds,
        "detection_interval_seconds": settings.detection_interval_seconds,
        "detection_open_after": settings.detection_open_after,
        "detection_close_after": settings.detection_close_after,
    }


def _settings_from(env: dict[str, str]) -> dict[str, Any]:
    """The --env settings this benchmark reads itself (the bucket width and the figures it
    reports), so the report says what the fleet ran with."""
    fields = Settings.model_fields
    return {k.lower(): v for k, v in env.items() if k.lower() in fields}


def _floor(value: float, width: float) -> float:
    return (value // width) * width


def _iso(value: float) -> str:
    return (
        datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

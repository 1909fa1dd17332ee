"""Prometheus counters and gauges of the detection service (``/metrics``)."""

from __future__ import annotations

from prometheus_client import Gauge

from stages.common.counters import OutcomeCounters

COUNTER_NAMES = (
    "buckets_read",  # (service, bucket) points read from telemetry.features
    "points_scored",  # (service, bucket) points learned: scored live or in a replay, once each
    "events_opened",
    "events_updated",  # severity rose
    "events_closed",
    "alerts_sent",  # deliveries accepted by a target (sqs, lake, webhook)
    "alerts_failed",  # delivery rounds that failed; the alert stays in the outbox
    "alerts_dead_lettered",  # moved to detection/dead-letter/ after too many failed rounds
    "checkpoints_written",
    "checkpoint_conflicts",  # another process wrote the same generation first
    "tick_failures",  # a round that failed (catalog or S3 unreachable); retried next interval
    "leases_taken",  # service leases taken free, released or expired (a dead holder's)
    "leases_stolen",  # service leases handed over by a live process at this one's request
    "leases_lost",  # service leases found taken by another process or not renewable in time
    "leases_released",  # service leases handed back: to balance, or at a clean stop
    "points_discarded",  # points scored but not checkpointed because the lease was lost
    "replays",  # models rebuilt because buckets arrived behind the newest one scored
    "points_replayed",  # points fed to the rebuilt models (the replays' cost)
    # buckets behind the newest one not learned: older than the replay window, or a few late
    # ones just behind it (worker.LATE_MAX_BUCKETS) that are not worth a replay
    "history_skipped",
    # polls of the features table's Glue entry that failed (the wake is lost; rounds still run)
    "wake_errors",
)


def counters() -> OutcomeCounters:
    return OutcomeCounters("detection", COUNTER_NAMES, "Stage 04 detection outcomes")


_gauges: dict[str, Gauge] = {}


def gauge(name: str, help_text: str) -> Gauge:
    # One process-wide registry: an app built twice in one process (tests) reuses the gauge.
    if name not in _gauges:
        _gauges[name] = Gauge(name, help_text)
    return _gauges[name]


LAG = gauge(
    "detection_lag_seconds",
    "Seconds between now and the end of the oldest service's last scored bucket",
)
OPEN_EVENTS = gauge("detection_open_events", "Anomaly events open now")
OUTBOX_PENDING = gauge("detection_alerts_pending", "Alerts in the outbox waiting for delivery")
OWNED_SERVICES = gauge(
    "detection_owned_services", "Services whose lease this detection process holds now"
)

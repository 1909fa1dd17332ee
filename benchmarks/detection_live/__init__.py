"""Time to detect in live mode: ``python -m benchmarks.detection_live [--quick]``.

    .venv/bin/python -m benchmarks.detection_live                 # 6 triggers on 3 services
    .venv/bin/python -m benchmarks.detection_live --quick         # 1 trigger, for the test
    .venv/bin/python -m benchmarks.detection_live --env FEATURES_ALLOWED_LATENESS_SECONDS=15

The scoreboard (``python -m benchmarks.detection``) measures time to detect in event time: from
a window's start to the end of the bucket whose score opened the event. Live, an alert comes
later: the bucket must first be folded into the curated tables and written to
``telemetry.features`` (its watermark: bucket end + ``FEATURES_ALLOWED_LATENESS_SECONDS``, then
the ETL's features step), then read and scored by the detection service (every
``DETECTION_INTERVAL_SECONDS``), and the alert must reach SQS. This benchmark measures that
whole path on a private fleet (free ports, its own RUN_DIR and DATA_DIR, started with the fleet
CLI as ``./start.sh`` does):

1. the Stage 00 services, the emulator, the consumer and the ETL start;
2. the orchestrator generates a history of the services (``POST /api/history``: 60 minutes at
   2 s resolution, no anomaly) ending at the current bucket, and continuous generation starts
   on the same services (150 records/s);
3. once the features table holds every history bucket, the detection service starts, scores
   the history (its detectors learn) and catches up with the live buckets;
4. after ``--settle`` seconds of live traffic, ``--triggers`` anomalies are triggered
   (``POST /api/anomaly/trigger``, intensity 90, 60 s), rotating over the services and over
   anomaly types the scoreboard finds, one at a time, the next after the previous window has
   ended and its service has no open event;
5. a thread receives every message of the alert queue and another polls ``/api/anomalies``.

For each trigger: window start (the ground truth's ``start``) -> SQS open message received, and
-> first listed by ``/api/anomalies``; split into event time (window start -> end of the
opening bucket), bucket end -> the first features snapshot holding the bucket, that commit ->
the alert's SQS ``SentTimestamp``, and sent -> received. Also the open alerts that match no
trigger (false alarms), the ETL's late-record count and the live rate achieved. Writes
``benchmarks/results/detection-live-<stamp>.json``.
"""

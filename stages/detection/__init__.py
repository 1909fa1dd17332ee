"""Stage 04 detection: online detectors, the voting decision engine, events, ``score-csv``.

The library is pure (no I/O, no clock): a point goes in, scores and a decision come out, and
each point is scored with only the points before it. ``detectors/`` holds one module per
detector behind one interface (``detectors/base.py``), ``decision.py`` the weighted voting,
``events.py`` the hysteresis that turns decisions into incidents, ``ensemble.py`` the wiring of a
series or a service, ``cli.py`` the ``score-csv`` command. Detection never sees ground-truth
fields: its inputs are timestamps and values only.

The service (port 8040) is built around the library, and all I/O lives there: ``reader.py``
(features in), ``checkpoint.py`` (progress and model state in md-models), ``store.py`` (events,
feedback), ``alerts.py`` (outbox, SQS, webhook), ``events_table.py`` (``telemetry.anomalies``),
``worker.py`` (the loop), ``app.py`` (HTTP), ``metrics.py`` (Prometheus).
"""

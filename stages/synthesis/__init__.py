"""Log Synthesis (port 8002): labelled log, metric and APM records of the canonical shape.

- ``log_types/``: one module per category; ``registry.py`` holds the 63 ``LogType`` generators
  (normal attributes, the anomalous override, the message).
- ``metric_records.py``: metric values from Pattern Generator compositions; ``apm.py``: traces.
- ``generator.py``: a synthesize request in, record dicts out (the domain entry point).
- ``entity_pool.py``: users and accounts from the State Manager.
- ``forward.py``: chunks to ingestion.
- ``synthesizer.py`` ties them together for ``app.py`` (routes only).

``benchmarks/synthesis_rate.py`` measures records per second of one process.
"""

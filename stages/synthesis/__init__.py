"""Log Synthesis (port 8002): labelled log, metric and APM records of the canonical shape.

- ``log_types/``: one module per category; ``registry.py`` holds the 63 ``LogType`` generators
  (normal attributes, the anomalous override, the message).
- ``metrics.py``: metric values from Pattern Generator compositions; ``apm.py``: traces.
- ``generator.py``: a synthesize request in, record dicts out (the domain entry point).
- ``state.py``: users and accounts from the State Manager; ``forward.py``: chunks to ingestion.
- ``synthesizer.py`` ties them together for ``app.py`` (routes only); ``bench.py`` measures.
"""

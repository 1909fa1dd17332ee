"""The dashboard's own Prometheus metrics: what it costs the lake and the consumer to watch."""

from __future__ import annotations

from prometheus_client import Counter

S3_LIST_CALLS = Counter("dashboard_s3_list_calls_total", "ListObjectsV2 calls made")
S3_BYTES_READ = Counter(
    "dashboard_s3_bytes_read_total", "Object bytes read from S3, by purpose", ["purpose"]
)
S3_BYTES_INFLATED = Counter(
    "dashboard_s3_bytes_inflated_total",
    "Bytes decompressed from gzip objects, by purpose",
    ["purpose"],
)
PROBE_FAILURES = Counter(
    "dashboard_probe_failures_total", "Failed reads of a pipeline component", ["target"]
)

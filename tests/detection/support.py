"""What the detection tests share: features rows written as the ETL writes them, a counter read
from a /metrics page, and the alerts drained from the SQS queue."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import orjson
import pyarrow as pa

from stages.etl.features import ARROW_SCHEMA


def metric_rows(
    points: Iterable[tuple[str, str, datetime, float]], width: int, spread: float = 0.0
) -> pa.Table:
    """``telemetry.features`` rows of metric buckets: one per (service, metric name, bucket
    start, mean), three values each, ``min``/``max`` at ``spread`` from the mean."""
    columns: dict[str, list[Any]] = {f.name: [] for f in ARROW_SCHEMA}
    for service, name, start, value in points:
        row = {
            "service": service,
            "signal": "metric",
            "name": name,
            "bucket_start": start,
            "bucket_seconds": width,
            "count": 3,
            "error_count": None,
            "error_rate": None,
            "mean": value,
            "min": value - spread,
            "max": value + spread,
            "p50": value,
            "p95": value,
            "p99": value,
            "dt": date(start.year, start.month, start.day),
            "hr": start.hour,
        }
        for key, item in row.items():
            columns[key].append(item)
    return pa.table(columns, schema=ARROW_SCHEMA)


def cpu_and_latency(i: int, service: str, spiked: bool) -> dict[str, float]:
    """Bucket ``i``'s cpu and latency of ``service``: steady noise, seeded by both, or a spike
    far outside it when ``spiked``."""
    rng = random.Random(f"{service}-{i}")
    cpu = 40.0 + rng.gauss(0, 2.0)
    latency = 120.0 + rng.gauss(0, 6.0)
    if spiked:
        cpu, latency = 97.0, 950.0
    return {"cpu": cpu, "latency": latency}


def prometheus_value(text: str, name: str) -> float:
    """The value of the unlabelled sample ``name`` on a /metrics page."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def drain_alerts(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every alert waiting in the queue (deleted once read), with its group and dedup ids
    under ``_attributes``."""
    received = []
    for _ in range(5):
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        )
        for item in answer.get("Messages", []):
            received.append({**orjson.loads(item["Body"]), "_attributes": item["Attributes"]})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=item["ReceiptHandle"])
    return received

"""Small builders shared by the synthesis tests."""

from __future__ import annotations

from typing import Any

from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import Batch, synthesize
from stages.synthesis.schemas import SynthesizeRequest

WINDOW_START = "2026-03-02T10:00:00Z"
WINDOW_END = "2026-03-02T10:10:00Z"
INSIDE = "2026-03-02T10:05:00Z"


def anomaly(anomaly_type: str, intensity: float = 90, **extra: Any) -> dict[str, Any]:
    return {
        "anomaly_type": anomaly_type,
        "scenario_id": f"test-{anomaly_type}",
        "intensity": intensity,
        "window_start": WINDOW_START,
        "window_end": WINDOW_END,
        **extra,
    }


def make(pool: EntityPool | None = None, **body: Any) -> Batch:
    body.setdefault("seed", 7)
    body.setdefault("timestamp", INSIDE)
    return synthesize(SynthesizeRequest.model_validate(body), pool or EntityPool())


def anomalous_logs(anomaly_type: str, count: int = 200, **extra: Any) -> list[dict[str, Any]]:
    batch = make(count=count, kinds=["log"], anomaly=anomaly(anomaly_type, **extra))
    return [r for r in batch.records if r["is_anomaly"]]

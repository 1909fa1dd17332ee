"""What the HTTP layer calls: generation, forwarding, counting, health and the catalogue."""

from __future__ import annotations

from typing import Any

import httpx

from stages.common.catalogue import LOG_TYPE_CATEGORIES
from stages.synthesis.errors import UnknownNames
from stages.synthesis.forward import Forwarder
from stages.synthesis.generator import ANOMALY_TYPES_BY_LOG_TYPE, synthesize
from stages.synthesis.log_types import REGISTRY
from stages.synthesis.schemas import LogTypeInfo, SynthesizeRequest, SynthesizeResponse
from stages.synthesis.state import StateSync
from stages.synthesis.telemetry import REQUESTS, STATS, count_records


class Synthesizer:
    def __init__(self, state_client: httpx.Client, ingestion_client: httpx.Client) -> None:
        self.state = StateSync(state_client)
        self.forwarder = Forwarder(ingestion_client)

    def start(self) -> None:
        self.state.start()

    def stop(self) -> None:
        self.state.stop()
        self.forwarder.close()

    def run(self, req: SynthesizeRequest) -> SynthesizeResponse:
        try:
            batch = synthesize(req, self.state.pool)
            for kind in ("log", "metric", "apm"):
                of_kind = [r for r in batch.records if r["kind"] == kind]
                anomalous = sum(1 for r in of_kind if r["is_anomaly"])
                count_records(kind, False, len(of_kind) - anomalous)
                count_records(kind, True, anomalous)
            forwarded = self.forwarder.forward(batch.records) if req.forward else 0
        except Exception:
            REQUESTS.labels("error").inc()
            STATS.add("requests_failed")
            raise
        REQUESTS.labels("ok").inc()
        STATS.add("requests")
        return SynthesizeResponse(
            count=len(batch.records),
            forwarded=forwarded,
            anomalous=batch.anomalous,
            records=batch.records if req.return_records else [],
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        reachable = self.state.reachable
        state = "unknown" if reachable is None else "ok" if reachable else "unreachable"
        # synthesis works on generated ids, so an unreachable State Manager is not unhealthy
        return True, {
            "state_manager": state,
            "entity_source": self.state.pool.source,
            "log_types": len(REGISTRY),
        }

    def status(self) -> dict[str, Any]:
        return {"log_types": len(REGISTRY), "entity_source": self.state.pool.source} | (
            STATS.snapshot()
        )


def log_type_catalogue(category: str | None = None) -> list[LogTypeInfo]:
    if category is not None and category not in LOG_TYPE_CATEGORIES:
        raise UnknownNames("category", [category], LOG_TYPE_CATEGORIES)
    return [
        LogTypeInfo(
            name=spec.name,
            category=spec.category,
            services=list(spec.services),
            fields=list(spec.fields),
            anomalous_fields=list(spec.anomalous_fields),
            anomaly_types=list(ANOMALY_TYPES_BY_LOG_TYPE[spec.name]),
            description=spec.description,
        )
        for spec in REGISTRY.values()
        if category is None or spec.category == category
    ]

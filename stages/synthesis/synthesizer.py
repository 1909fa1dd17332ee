"""What the HTTP layer calls: generation, forwarding, counting, health and the catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from stages.common.catalogue import LOG_TYPE_CATEGORIES
from stages.synthesis.errors import IngestionRejected, IngestionUnavailable, UnknownNames
from stages.synthesis.forward import Forwarder
from stages.synthesis.generator import ANOMALY_TYPES_BY_LOG_TYPE, synthesize
from stages.synthesis.idempotency import RequestLedger, check_keyable
from stages.synthesis.log_types import REGISTRY
from stages.synthesis.schemas import LogTypeInfo, SynthesizeRequest, SynthesizeResponse
from stages.synthesis.state import StateSync
from stages.synthesis.telemetry import REQUESTS, STATS, count_records


class Synthesizer:
    def __init__(self, state_client: httpx.Client, ingestion_client: httpx.Client) -> None:
        self.state = StateSync(state_client)
        self.forwarder = Forwarder(ingestion_client)
        self.ledger = RequestLedger()

    def start(self) -> None:
        self.state.start()

    def stop(self) -> None:
        self.state.stop()
        self.forwarder.close()

    def run(self, req: SynthesizeRequest, key: str | None = None) -> SynthesizeResponse:
        """Make and (if asked) forward the records. With an idempotency key, only what earlier
        attempts with the key did not get into ingestion is made; see ``idempotency``."""
        if key is None:
            return self._make(req)
        check_keyable(req)
        with self.ledger.claim(key, req) as entry:
            if entry.answer is not None:
                REQUESTS.labels("replayed").inc()
                STATS.add("requests_replayed")
                return entry.answer
            if entry.forwarded:
                STATS.add("requests_resumed")
            try:
                made = self._make(req.model_copy(update={"count": req.count - entry.forwarded}))
            except (IngestionUnavailable, IngestionRejected) as exc:
                entry.forwarded += len(exc.accepted)
                entry.anomalous += _anomalous(exc.accepted)
                if isinstance(exc, IngestionUnavailable):
                    # the caller learns what the key has in ingestion, not just this attempt
                    raise IngestionUnavailable(
                        entry.forwarded, req.count, exc.reason, exc.retry_after
                    ) from None
                raise
            entry.forwarded = req.count
            entry.anomalous += made.anomalous
            entry.answer = SynthesizeResponse(
                count=req.count, forwarded=req.count, anomalous=entry.anomalous, records=[]
            )
            return entry.answer

    def _make(self, req: SynthesizeRequest) -> SynthesizeResponse:
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


def _anomalous(records: Sequence[dict[str, Any]]) -> int:
    return sum(1 for r in records if r.get("is_anomaly"))


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

"""What the HTTP layer calls: generation, forwarding, counting, health and the catalogue."""

from __future__ import annotations

import time
from typing import Any

import httpx

from stages.common.vocabulary import LOG_TYPE_CATEGORIES
from stages.synthesis.entity_pool import StateSync
from stages.synthesis.errors import (
    IngestionRejected,
    IngestionUnavailable,
    SeriesNotResumable,
    UnknownNames,
)
from stages.synthesis.forward import Forwarder
from stages.synthesis.generator import ANOMALY_TYPES_BY_LOG_TYPE, Batch, synthesize
from stages.synthesis.idempotency import KeyedRequest, RequestLedger, check_keyable
from stages.synthesis.log_types import REGISTRY
from stages.synthesis.schemas import LogTypeInfo, SynthesizeRequest, SynthesizeResponse
from stages.synthesis.telemetry import REQUESTS, RESENT, RESUMED, STATS, count_records


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
        attempts with the key did not get into ingestion is sent; see ``idempotency``."""
        if key is None:
            return self._run_once(req)
        check_keyable(req)
        arrived = time.monotonic()
        with self.ledger.claim(key, req) as entry:
            if entry.finished:
                REQUESTS.labels("replayed").inc()
                return _finished_answer(req, entry)
            return self._run_keyed(req, entry, arrived)

    def _run_once(self, req: SynthesizeRequest) -> SynthesizeResponse:
        try:
            batch = self._generate(req)
            forwarded = self.forwarder.forward(batch.records) if req.forward else 0
        except Exception:
            _count_request("error")
            raise
        _count_request("ok")
        return SynthesizeResponse(
            count=len(batch.records),
            forwarded=forwarded,
            anomalous=batch.anomalous,
            records=batch.records if req.return_records else [],
        )

    def _run_keyed(
        self, req: SynthesizeRequest, entry: KeyedRequest, arrived: float
    ) -> SynthesizeResponse:
        """Send the key's unconfirmed records again plus new ones for what is still missing.
        The forwarding budget runs from the request's arrival, time waiting for the key
        included, so the caller still gets an answer before its own timeout."""
        records = list(entry.unsent)
        if entry.forwarded or records:
            RESUMED.inc()
        if records:
            RESENT.inc(len(records))
        total = req.total()
        fresh = total - entry.forwarded - len(records)
        try:
            if fresh > 0 and req.series is not None and fresh < total:
                # A grid cannot be remade in part: which of its records got in is not kept.
                raise SeriesNotResumable(
                    f"{total - fresh} of the request's {total} records are in ingestion and "
                    "the rest were not kept; the series cannot be remade in part",
                    detail={"forwarded": entry.forwarded, "total": total},
                )
            if fresh > 0 and req.series is not None:
                records += self._generate(req).records
            elif fresh > 0:
                records += self._generate(req.model_copy(update={"count": fresh})).records
        except Exception:
            _count_request("error")
            raise
        accepted, error = self.forwarder.forward_some(records, started=arrived)
        entry.forwarded += len(accepted)
        entry.anomalous += sum(1 for r in accepted if r["is_anomaly"])
        # Ingestion answers record by record: what it accepted is in, what it rejected would be
        # refused again; every other record is unconfirmed and a retry sends it as it is.
        done = {id(r) for r in accepted}
        if isinstance(error, IngestionRejected):
            done |= {id(r) for r in error.records}
        self.ledger.keep_unsent(entry, [r for r in records if id(r) not in done])
        if error is not None:
            _count_request("error")
            raise _with_key_totals(error, entry.forwarded, total)
        _count_request("ok")
        entry.finished = True
        return _finished_answer(req, entry)

    def _generate(self, req: SynthesizeRequest) -> Batch:
        batch = synthesize(req, self.state.pool)
        for kind in ("log", "metric", "apm"):
            of_kind = [r for r in batch.records if r["kind"] == kind]
            anomalous = sum(1 for r in of_kind if r["is_anomaly"])
            count_records(kind, False, len(of_kind) - anomalous)
            count_records(kind, True, anomalous)
        return batch

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


def _finished_answer(req: SynthesizeRequest, entry: KeyedRequest) -> SynthesizeResponse:
    total = req.total()
    return SynthesizeResponse(count=total, forwarded=total, anomalous=entry.anomalous, records=[])


def _count_request(outcome: str) -> None:
    REQUESTS.labels(outcome).inc()


def _with_key_totals(error: Exception, forwarded: int, total: int) -> Exception:
    """The error a keyed attempt answers with, counting what the key has in ingestion (so the
    caller's tally stays right whatever the attempt's own fate)."""
    if isinstance(error, IngestionUnavailable):
        return IngestionUnavailable(forwarded, total, error.reason, error.retry_after)
    if isinstance(error, IngestionRejected):
        detail = error.detail if isinstance(error.detail, dict) else {}
        return IngestionRejected(
            error.message, detail=detail | {"forwarded": forwarded, "total": total}
        )
    return error


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

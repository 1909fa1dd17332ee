"""Calls to Log Synthesis and the State Manager, with the retry policy of the data path.

A synthesis 503 or a connection failure is retried after a bounded back-off; what still fails is
returned as an outcome (never raised into the generator loop) so the caller counts it: stats show
records requested against records produced.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from stages.common.records import format_timestamp
from stages.common.retry import backoff_delay, parse_retry_after
from stages.orchestrator import metrics
from stages.orchestrator.ground_truth import Window, WindowScope

MAX_SYNTHESIS_COUNT = 5_000  # the synthesis API's per-call bound
SYNTHESIS_ATTEMPTS = 4
MAX_RETRY_DELAY_SECONDS = 2.0
CATALOGUE_TIMEOUT_SECONDS = 2.0
# Refused records would be refused again; a series lost in part cannot be remade in part.
_FINAL_ERRORS = frozenset({"ingestion_rejected", "series_not_resumable"})


def derive_seed(base: int, *parts: int | str) -> int:
    """A per-call seed from the run's seed, stable across processes (unlike ``hash``)."""
    text = ":".join(str(p) for p in (base, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") % (2**31)


@dataclass(frozen=True)
class AnomalyContext:
    anomaly_type: str
    scenario_id: str
    intensity: float
    window_start: datetime
    window_end: datetime
    target_service: str | None = None
    target_entity: str | None = None
    scope: WindowScope | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "anomaly_type": self.anomaly_type,
            "scenario_id": self.scenario_id,
            "intensity": self.intensity,
            "window_start": format_timestamp(self.window_start),
            "window_end": format_timestamp(self.window_end),
        }
        if self.target_service:
            body["target_service"] = self.target_service
        if self.target_entity:
            body["target_entity"] = self.target_entity
        if self.scope is not None:
            body["scope"] = self.scope.to_json()
        return body


def context_for(window: Window) -> AnomalyContext:
    """What synthesis needs to know of a window: its anomaly, bounds, target and scope."""
    return AnomalyContext(
        anomaly_type=window.anomaly_type,
        scenario_id=window.scenario_id,
        intensity=window.intensity,
        window_start=window.start,
        window_end=window.last_end,
        target_service=window.services[0] if window.services else None,
        target_entity=window.target_entity,
        scope=window.scope,
    )


@dataclass(frozen=True)
class SynthesisRequest:
    count: int
    seed: int | None
    timestamp: datetime
    spread_seconds: float
    services: tuple[str, ...] | None = None
    log_types: tuple[str, ...] | None = None
    anomaly: AnomalyContext | None = None
    anomalous_share: float | None = None
    # every other window overlapping the request's time range: synthesis labels by their scope
    windows: tuple[AnomalyContext, ...] = ()
    kinds: tuple[str, ...] | None = None
    # metric series on a grid (synthesis's ``series``), for history, and the records it makes
    series: dict[str, Any] | None = None
    grid_records: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "count": self.count,
            "timestamp": format_timestamp(self.timestamp),
            "spread_seconds": round(self.spread_seconds, 6),
            "forward": True,
            "return_records": False,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        if self.services:
            body["services"] = list(self.services)
        if self.log_types:
            body["log_types"] = list(self.log_types)
        if self.anomaly is not None:
            body["anomaly"] = self.anomaly.to_json()
            body["anomalous_share"] = self.anomalous_share
        if self.windows:
            body["windows"] = [w.to_json() for w in self.windows]
        if self.kinds:
            body["kinds"] = list(self.kinds)
        if self.series is not None:
            body["series"] = self.series
        return body

    @property
    def total(self) -> int:
        """Records synthesis makes for it: ``count`` plus the series grid's."""
        return self.count + self.grid_records


@dataclass
class SynthesisOutcome:
    requested: int
    produced: int = 0
    retries: int = 0
    error: str | None = None


def split_count(count: int, limit: int = MAX_SYNTHESIS_COUNT) -> list[int]:
    """Chunks of at most ``limit`` that add up to ``count``."""
    chunks = [limit] * (count // limit)
    if count % limit:
        chunks.append(count % limit)
    return chunks


class SynthesisClient:
    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def log_type_emitters(self) -> dict[str, tuple[str, ...]]:
        """Log type -> the services synthesis emits it from (``GET /api/log-types``)."""
        resp = self._http.get("/api/log-types", timeout=CATALOGUE_TIMEOUT_SECONDS)
        resp.raise_for_status()
        return {
            item["name"]: tuple(item["services"])
            for item in resp.json()
            if isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("services"), list)
        }

    def synthesize(self, request: SynthesisRequest, stop: threading.Event) -> SynthesisOutcome:
        """Ask for ``request.count`` records, retrying what is still missing.

        Every attempt sends the same request with the same ``Idempotency-Key``, and synthesis
        answers with what the key has in ingestion so far: a 503's ``detail.forwarded`` or a
        200's ``count``. A retry therefore makes only the missing records, also when an answer
        was lost on the way back (a timeout after synthesis had forwarded the records)."""
        outcome = SynthesisOutcome(requested=request.total)
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(SYNTHESIS_ATTEMPTS):
            if attempt:
                outcome.retries += 1
            delay, reason = self._attempt(request, headers, outcome)
            if reason is None:
                outcome.error = None
                return outcome
            outcome.error = reason
            done = outcome.produced >= request.total
            if delay is None or done or attempt == SYNTHESIS_ATTEMPTS - 1:
                break
            metrics.SYNTHESIS_RETRIES.labels(reason.split(":")[0]).inc()
            if stop.wait(delay):
                outcome.error = f"{reason} (stopped while retrying)"
                break
        return outcome

    def _attempt(
        self, request: SynthesisRequest, headers: dict[str, str], outcome: SynthesisOutcome
    ) -> tuple[float | None, str | None]:
        """(retry delay or None for no retry, failure reason or None on success)."""
        try:
            resp = self._http.post("/api/synthesize", json=request.to_json(), headers=headers)
        except httpx.HTTPError as exc:
            return _backoff(outcome.retries), f"unreachable: {type(exc).__name__}"
        if resp.status_code >= 500:
            outcome.produced = max(outcome.produced, _forwarded_before_failure(resp, request.total))
        if resp.status_code == 503:
            return _retry_after(resp), f"unavailable: {_message(resp)}"
        if resp.status_code == 409:  # an earlier attempt with the key is still running
            return _retry_after(resp), f"in_progress: {_message(resp)}"
        if _error_code(resp) in _FINAL_ERRORS:  # a retry would get the same answer
            return None, f"ingestion_rejected: {_message(resp)}"
        if resp.status_code >= 500:
            return _backoff(outcome.retries), f"server_error: {_message(resp)}"
        if resp.status_code >= 400:
            return None, f"rejected: {_message(resp)}"
        try:
            produced = int(resp.json()["count"])
        except (ValueError, KeyError, TypeError):
            return None, "bad_answer: synthesis answer has no integer 'count'"
        outcome.produced = max(outcome.produced, min(produced, request.total))
        return None, None


def _error_code(resp: httpx.Response) -> str | None:
    try:
        code = resp.json().get("error")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


def _message(resp: httpx.Response) -> str:
    try:
        message = resp.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return f"synthesis answered {resp.status_code}: {message or resp.text[:200]}"


def _forwarded_before_failure(resp: httpx.Response, asked: int) -> int:
    try:
        forwarded = int(resp.json()["detail"]["forwarded"])
    except (ValueError, KeyError, TypeError):
        return 0
    return min(max(forwarded, 0), asked)


def _backoff(retries: int) -> float:
    return backoff_delay(retries, base=0.2, cap=MAX_RETRY_DELAY_SECONDS)


def _retry_after(resp: httpx.Response) -> float:
    seconds = parse_retry_after(resp.headers.get("Retry-After"))
    if seconds is None:
        return 1.0
    return min(MAX_RETRY_DELAY_SECONDS, max(0.05, seconds))


@dataclass
class StateEffectResult:
    entity_type: str
    to_state: str
    entity_id: str | None = None
    outcome: str = "pending"  # applied | unchanged | rejected | not_found | failed
    detail: Any = None
    previous_state: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "to_state": self.to_state,
            "previous_state": self.previous_state,
            "outcome": self.outcome,
            "detail": self.detail,
        }


class StateClient:
    ENTITY_PAGE = 200

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def entities(self, entity_type: str) -> list[dict[str, Any]]:
        resp = self._http.get(
            "/api/entities", params={"type": entity_type, "limit": self.ENTITY_PAGE}
        )
        resp.raise_for_status()
        items = resp.json().get("items", [])
        return [i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]

    def transition(self, entity_id: str, to_state: str, reason: str) -> httpx.Response:
        return self._http.post(
            f"/api/entities/{quote(entity_id, safe='')}/transition",
            json={"to": to_state, "reason": reason},
        )

"""The web control panel at ``/`` and the one read-only endpoint only it needs (the rate
history behind its chart). Everything the page changes goes through the orchestrator's public API
from ``static/panel.js``, so the panel can do nothing ``curl`` cannot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel

import stages
from stages.common.config import get_settings
from stages.common.service import html_page
from stages.common.vocabulary import SEED_TYPES
from stages.orchestrator.control import Orchestrator
from stages.orchestrator.ground_truth import Window
from stages.orchestrator.rate_history import SAMPLE_SECONDS, RateHistory, RateSample
from stages.orchestrator.schemas import WindowOut

STATIC_DIR = Path(__file__).parent / "static"
MAX_CHART_WINDOWS = 200  # the most recent windows drawn on the chart

_templates = Environment(
    loader=PackageLoader("stages.orchestrator", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


class RatePointOut(BaseModel):
    at: float  # Unix time, seconds
    continuous: float
    execution: float
    total: float


class RateHistoryOut(BaseModel):
    sample_seconds: float
    points: list[RatePointOut]
    windows: list[WindowOut]


@asynccontextmanager
async def rate_sampling(app: FastAPI) -> AsyncIterator[None]:
    """Samples the produced-records counters once a second for the panel's chart."""
    history = RateHistory()
    app.state.rate_history = history
    task = asyncio.create_task(_sample_forever(history), name="panel-rate-sampler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sample_forever(history: RateHistory) -> None:
    while True:
        history.sample()
        await asyncio.sleep(SAMPLE_SECONDS)


panel = APIRouter(lifespan=rate_sampling, tags=["control panel"])
panel.mount("/static/orchestrator", StaticFiles(directory=STATIC_DIR), name="orchestrator-static")


@panel.get("/", include_in_schema=False, response_class=HTMLResponse)
def control_panel(request: Request) -> HTMLResponse:
    orchestrator: Orchestrator = request.app.state.orchestrator
    html = _templates.get_template("panel.html").render(
        version=stages.__version__,
        seed_types=SEED_TYPES,
        anomaly_types=orchestrator.anomaly_types(),
        token_required=bool(get_settings().control_token),
    )
    return html_page(html)


@panel.get(
    "/api/panel/rate",
    summary="Generated records/s per second over the last minutes, with the anomaly windows "
    "that overlap them (the control panel's chart)",
)
def rate_history(
    request: Request,
    seconds: Annotated[int, Query(ge=10, le=900, description="How far back to go")] = 300,
) -> RateHistoryOut:
    history: RateHistory = request.app.state.rate_history
    orchestrator: Orchestrator = request.app.state.orchestrator
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    windows = [w for w in orchestrator.windows(only_open=None) if _overlaps(w, since)]
    return RateHistoryOut(
        sample_seconds=SAMPLE_SECONDS,
        points=[_point(s) for s in history.recent(seconds)],
        windows=[WindowOut.model_validate(w.to_json()) for w in windows[-MAX_CHART_WINDOWS:]],
    )


def _overlaps(window: Window, since: datetime) -> bool:
    return window.end is None or window.end >= since


def _point(sample: RateSample) -> RatePointOut:
    return RatePointOut(
        at=sample.at,
        continuous=round(sample.continuous, 3),
        execution=round(sample.execution, 3),
        total=round(sample.total, 3),
    )

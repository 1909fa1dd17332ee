"""The detection view: a page at ``/`` drawing a service's signals with its anomaly events and
the ground-truth windows over them, the open events and the scoreboard, and the JSON it reads.

Detection itself never sees a label; only this view fetches the ground truth, over HTTP from the
orchestrator, to draw it next to what detection found. The orchestrator being down is a state
the page shows ("ground truth unavailable"), not an error: the answer says so with a reason.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pyiceberg.catalog import Catalog
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    And,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
    LessThanOrEqual,
)
from pyiceberg.types import TimestamptzType

import stages
from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.errors import NotFound, Unavailable, Unprocessable
from stages.common.lakehouse import FEATURES_TABLE, open_catalog
from stages.common.service import html_page
from stages.detection.params import Moment
from stages.detection.reader import FeatureReader, Point, SeriesSpec, parse_series

STATIC_DIR = Path(__file__).parent / "static"
SCOREBOARD_KEY = "detection/scoreboard/latest.json"
PUBLISH_HINT = "no scoreboard yet: run python -m benchmarks.detection --publish"
# The widest range /api/signals and /api/ground-truth-windows answer for.
MAX_RANGE = timedelta(days=7)
DEFAULT_RANGE = timedelta(hours=1)
# The orchestrator keeps at most 10,000 windows in memory; its pages hold up to 10,000.
GROUND_TRUTH_PAGE = 10_000
GROUND_TRUTH_MAX_PAGES = 5

_templates = Environment(
    loader=PackageLoader("stages.detection", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


class BadRange(Unprocessable):
    error = "bad_range"


class ScoreboardNotPublished(NotFound):
    error = "scoreboard_not_found"


ServiceName = Annotated[str, Query(min_length=1, max_length=200, description="A service name")]
From = Annotated[Moment, Query(alias="from", description="ISO 8601; default: one hour before `to`")]
To = Annotated[Moment, Query(alias="to", description="ISO 8601, exclusive; default: now")]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[start, end) in UTC (a time without an offset is UTC), checked: start before end, and at
    most MAX_RANGE apart."""
    try:
        end = _utc(end) if end is not None else datetime.now(UTC)
        start = _utc(start) if start is not None else end - DEFAULT_RANGE
    except OverflowError:
        raise BadRange("'from' and 'to' must be between the years 1 and 9999 in UTC") from None
    if start >= end:
        raise BadRange(f"'from' ({iso(start)}) must be before 'to' ({iso(end)})")
    if end - start > MAX_RANGE:
        raise BadRange(
            f"the range {iso(start)} .. {iso(end)} is longer than {MAX_RANGE.days} days; "
            "ask for a shorter one"
        )
    return start, end


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- signals ----------------------------------------------------------------------------------
class SeriesOut(BaseModel):
    name: str = Field(description="The series name events and rules use")
    signal: str
    feature: str = Field(description="The `name` column of telemetry.features")
    column: str


class SignalsOut(BaseModel):
    service: str
    start: str = Field(serialization_alias="from")
    end: str = Field(serialization_alias="to")
    series: list[SeriesOut]
    timestamps: list[float] = Field(description="Bucket (or group) starts, epoch seconds")
    values: dict[str, list[float | None]] = Field(
        description="Per series, one value per timestamp (null: no value)"
    )
    buckets: int = Field(description="Buckets of the range read from telemetry.features")
    bucket_seconds: int = Field(description="The width of a features bucket")
    downsampled_seconds: float | None = Field(
        description="With more buckets than DETECTION_VIEW_MAX_POINTS: the width of the groups "
        "each point is the maximum of; null when every bucket is a point"
    )


def downsample(
    points: list[Point], names: Iterable[str], max_points: int
) -> tuple[list[float], dict[str, list[float | None]], float | None]:
    """Timestamps and one array per series; above ``max_points`` points, groups of ``step``
    seconds (a whole number of buckets) from the first point, each the maximum of its values, so
    a one-bucket spike stays as high as it was."""
    names = list(names)
    if len(points) <= max_points:
        return (
            [p.timestamp for p in points],
            {n: [p.values.get(n) for p in points] for n in names},
            None,
        )
    first = points[0].timestamp
    span = points[-1].timestamp - first
    width = min(b.timestamp - a.timestamp for a, b in itertools.pairwise(points))
    # step > span / max_points, so the group numbers run from 0 to max_points - 1 at most.
    step = math.ceil((span + 1) / max_points / width) * width
    groups: dict[int, dict[str, float]] = {}
    for point in points:
        group = groups.setdefault(int((point.timestamp - first) // step), {})
        for name, value in point.values.items():
            if name not in group or value > group[name]:
                group[name] = value
    keys = sorted(groups)
    return (
        [first + k * step for k in keys],
        {n: [groups[k].get(n) for k in keys] for n in names},
        step,
    )


def read_signals(
    catalog: Catalog, specs: tuple[SeriesSpec, ...], service: str, start: datetime, end: datetime
) -> list[Point]:
    """The service's points with a bucket in [start, end), one per bucket, in order."""
    try:
        table = catalog.load_table(FEATURES_TABLE)
    except NoSuchTableError:
        return []
    reader = FeatureReader(catalog, specs)
    row_filter = And(
        EqualTo("service", service),
        In("signal", {s.signal for s in specs}),
        In("name", {s.name for s in specs}),
        # dt prunes partitions; bucket_start the rows.
        GreaterThanOrEqual("dt", start.date().isoformat()),
        LessThanOrEqual("dt", end.date().isoformat()),
        GreaterThanOrEqual("bucket_start", start.isoformat()),
        LessThan("bucket_start", end.isoformat()),
    )
    rows = table.scan(row_filter=row_filter, selected_fields=reader.columns).to_arrow()
    return reader.pivot(rows, {}).get(service, [])


class ServiceOut(BaseModel):
    service: str
    latest: str = Field(description="The start of its newest bucket in telemetry.features")


def services_with_features(catalog: Catalog) -> list[ServiceOut]:
    """Every service with rows in telemetry.features and its newest bucket, from the table's
    metadata only (partition values and column bounds of its data files): no data is read."""
    try:
        table = catalog.load_table(FEATURES_TABLE)
    except NoSuchTableError:
        return []
    field_id = table.schema().find_field("bucket_start").field_id
    newest: dict[str, float] = {}
    for task in table.scan(selected_fields=("service", "bucket_start")).plan_files():
        service, days, hour = (task.file.partition[i] for i in range(3))
        bound = (task.file.upper_bounds or {}).get(field_id)
        if bound is not None:
            latest = int(from_bytes(TimestamptzType(), bound)) / 1_000_000
        else:  # no column bounds kept: the partition's hour is as close as metadata gets
            latest = int(days) * 86_400 + int(hour) * 3600
        service = str(service)
        newest[service] = max(latest, newest.get(service, latest))
    return [
        ServiceOut(service=s, latest=iso(datetime.fromtimestamp(t, UTC)))
        for s, t in sorted(newest.items())
    ]


# --- ground truth -----------------------------------------------------------------------------
class _WindowIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    scenario_id: str
    anomaly_type: str
    services: list[str]
    metrics: list[str] = []
    start: datetime
    end: datetime | None
    planned_end: datetime | None = None
    intensity: float | None = None


class _PageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[_WindowIn]
    total: int


class TruthWindowOut(BaseModel):
    id: str
    scenario_id: str
    anomaly_type: str
    services: list[str]
    metrics: list[str]
    start: str
    end: str | None = Field(description="null while the window is open")
    intensity: float | None


class TruthWindowsOut(BaseModel):
    available: bool = Field(description="false: the orchestrator could not be asked")
    reason: str | None = Field(description="why the ground truth is unavailable")
    service: str
    start: str = Field(serialization_alias="from")
    end: str = Field(serialization_alias="to")
    windows: list[TruthWindowOut]


class GroundTruthUnavailable(Exception):
    pass


def fetch_windows(url: str, timeout: float) -> list[_WindowIn]:
    """Every window the orchestrator at ``url`` knows, oldest first."""
    windows: list[_WindowIn] = []
    try:
        with httpx.Client(timeout=timeout) as client:
            for _ in range(GROUND_TRUTH_MAX_PAGES):
                answer = client.get(
                    url, params={"limit": GROUND_TRUTH_PAGE, "offset": len(windows)}
                )
                if answer.status_code != 200:
                    raise GroundTruthUnavailable(
                        f"the orchestrator answered HTTP {answer.status_code}"
                    )
                page = _PageIn.model_validate_json(answer.content)
                windows.extend(page.items)
                if not page.items or len(windows) >= page.total:
                    break
    except httpx.HTTPError as exc:
        raise GroundTruthUnavailable(
            f"the orchestrator at {url} did not answer ({type(exc).__name__})"
        ) from exc
    except ValidationError as exc:
        raise GroundTruthUnavailable(
            f"the orchestrator's answer is not a ground-truth page ({exc.error_count()} errors)"
        ) from exc
    return windows


def windows_for(
    windows: Iterable[_WindowIn], service: str, start: datetime, end: datetime
) -> list[TruthWindowOut]:
    """The windows naming ``service`` that overlap [start, end); an open window lasts until now."""
    now = datetime.now(UTC)
    chosen = []
    for w in windows:
        w_start = _utc(w.start)
        w_end = _utc(w.end) if w.end is not None else now
        if service not in w.services or w_start >= end or w_end < start:
            continue
        chosen.append(
            TruthWindowOut(
                id=w.id,
                scenario_id=w.scenario_id,
                anomaly_type=w.anomaly_type,
                services=w.services,
                metrics=w.metrics,
                start=iso(w_start),
                end=iso(_utc(w.end)) if w.end is not None else None,
                intensity=w.intensity,
            )
        )
    return chosen


# --- the router ---------------------------------------------------------------------------------
def router(
    settings: Settings, *, s3: Any | None = None, catalog: Catalog | None = None
) -> APIRouter:
    """The page, its static files and its endpoints. Its own S3 client and catalog (default: new
    ones from ``settings``), apart from the detection loop's."""
    specs = parse_series(settings.detection_series)
    s3 = s3 if s3 is not None else aws.client("s3", settings)
    catalog = catalog if catalog is not None else open_catalog(settings, name="detection-view")
    bucket = resources.models_bucket(settings)
    orchestrator = (
        f"http://{settings.orchestrator_host}:{settings.orchestrator_port}/api/ground-truth"
    )
    truth_timeout = settings.detection_view_ground_truth_timeout_seconds
    view = APIRouter(tags=["detection view"])
    view.mount("/static/detection", StaticFiles(directory=STATIC_DIR), name="detection-static")

    @view.get("/", include_in_schema=False, response_class=HTMLResponse)
    def page() -> HTMLResponse:
        html = _templates.get_template("view.html").render(version=stages.__version__)
        return html_page(html)

    @view.get(
        "/api/signals/services",
        summary="The services with rows in telemetry.features and their newest bucket",
        responses={503: {"description": "The catalog or the lake cannot be read"}},
    )
    def list_services() -> list[ServiceOut]:
        try:
            return services_with_features(catalog)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise Unavailable(f"telemetry.features cannot be read: {exc}"[:300]) from exc

    @view.get(
        "/api/signals",
        summary="A service's configured series over a time range, ready for a chart",
        description="One array per series (DETECTION_SERIES) plus the timestamps. Ranges are "
        "at most 7 days; above DETECTION_VIEW_MAX_POINTS buckets, each point is the maximum of "
        "a group of buckets, so spikes stay visible.",
        response_model_by_alias=True,
        responses={
            422: {"description": "A bad time, or a range that is reversed or too long"},
            503: {"description": "The catalog or the lake cannot be read"},
        },
    )
    def get_signals(service: ServiceName, start: From = None, end: To = None) -> SignalsOut:
        first, last = time_range(start, end)
        try:
            points = read_signals(catalog, specs, service, first, last)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise Unavailable(f"telemetry.features cannot be read: {exc}"[:300]) from exc
        names = [s.series for s in specs]
        timestamps, values, step = downsample(points, names, settings.detection_view_max_points)
        return SignalsOut(
            service=service,
            start=iso(first),
            end=iso(last),
            series=[
                SeriesOut(name=s.series, signal=s.signal, feature=s.name, column=s.column)
                for s in specs
            ],
            timestamps=timestamps,
            values=values,
            buckets=len(points),
            bucket_seconds=settings.features_bucket_seconds,
            downsampled_seconds=step,
        )

    @view.get(
        "/api/ground-truth-windows",
        summary="The orchestrator's ground-truth windows of a service over a time range",
        description="Asked from the orchestrator's /api/ground-truth (ORCHESTRATOR_HOST, "
        "ORCHESTRATOR_PORT) for the view only; detection never reads labels. When the "
        "orchestrator cannot be asked, `available` is false and `reason` says why.",
        response_model_by_alias=True,
        responses={422: {"description": "A bad time, or a range that is reversed or too long"}},
    )
    def get_ground_truth_windows(
        service: ServiceName, start: From = None, end: To = None
    ) -> TruthWindowsOut:
        first, last = time_range(start, end)
        try:
            every = fetch_windows(orchestrator, truth_timeout)
        except GroundTruthUnavailable as exc:
            available, reason, chosen = False, str(exc), []
        else:
            available, reason, chosen = True, None, windows_for(every, service, first, last)
        return TruthWindowsOut(
            available=available,
            reason=reason,
            service=service,
            start=iso(first),
            end=iso(last),
            windows=chosen,
        )

    @view.get(
        "/api/scoreboard",
        summary="The latest published scoreboard (python -m benchmarks.detection --publish)",
        responses={
            404: {"description": "No scoreboard was published yet"},
            503: {"description": "The models bucket cannot be read, or the document is not JSON"},
        },
    )
    def get_scoreboard() -> dict[str, Any]:
        try:
            body = s3.get_object(Bucket=bucket, Key=SCOREBOARD_KEY)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise ScoreboardNotPublished(PUBLISH_HINT) from None
            raise Unavailable(f"the models bucket cannot be read: {exc}"[:300]) from exc
        except BotoCoreError as exc:
            raise Unavailable(f"the models bucket cannot be read: {exc}"[:300]) from exc
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Unavailable(f"s3://{bucket}/{SCOREBOARD_KEY} is not JSON") from exc
        if not isinstance(document, Mapping):
            raise Unavailable(f"s3://{bucket}/{SCOREBOARD_KEY} is not a JSON object")
        return dict(document)

    return view

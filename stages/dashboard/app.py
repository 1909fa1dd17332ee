"""HTTP routes of the pipeline dashboard (port 8010): a page and a read-only JSON API over the
configured streams and buckets and the real consumer."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from stages.common import aws, resources
from stages.common.config import Settings, get_settings
from stages.common.errors import NotFound, Unavailable, Unprocessable
from stages.common.service import configure_logging, create_service_app, html_page, run_service
from stages.common.shard_leases import ShardLeaseTable
from stages.dashboard import partitions, streams
from stages.dashboard.buckets import BucketScan, LakeReader
from stages.dashboard.consumer import ConsumerProbe
from stages.dashboard.sampler import Sampler
from stages.dashboard.schemas import (
    DEFAULT_PAGE_SIZE,
    BucketList,
    BucketName,
    BucketSummary,
    ConsumerStatus,
    DashboardConfig,
    Fresh,
    Key,
    Lines,
    ListingPage,
    LogExcerpt,
    PageSize,
    PartitionTree,
    Prefix,
    SeriesPoints,
    ServiceFilter,
    StreamList,
    StreamName,
    StreamView,
    TableList,
    TableName,
    TableView,
    TimeSeries,
    Token,
)
from stages.dashboard.tables import UNREADABLE, TableStats
from stages.dashboard.viewer import parse_line, read_first_lines

PACKAGE_DIR = Path(__file__).parent
PAGE_HTML = PACKAGE_DIR / "page.html"


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """AWS failures as answers the page can show: a missing bucket or key is a 404, anything
    else (the emulator or AWS down, throttling) a 503 to retry."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchBucket", "NoSuchKey", "404"}:
            raise NotFound(f"{what}: {code}") from exc
        if code in {"InvalidArgument", "InvalidToken", "KeyTooLongError"}:
            # e.g. a continuation token S3 did not issue: the caller's input, not an outage.
            message = exc.response.get("Error", {}).get("Message", "")
            raise Unprocessable(f"{what}: {code}: {message}") from exc
        raise Unavailable(f"{what}: {code or exc}", retry_after=5) from exc
    except BotoCoreError as exc:
        raise Unavailable(f"{what}: {exc}", retry_after=5) from exc


def _summary(scan: BucketScan) -> BucketSummary:
    return BucketSummary(
        bucket=scan.bucket,
        objects=scan.objects,
        bytes=scan.bytes,
        listed_at=scan.listed_at,
        age_seconds=round(max(0.0, time.monotonic() - scan.scanned_at), 3),
        list_calls=scan.list_calls,
    )


def _bucket_router() -> APIRouter:
    router = APIRouter(prefix="/api/buckets", tags=["buckets"])

    @router.get("", summary="Objects and bytes of every configured bucket")
    def list_buckets(request: Request, fresh: Fresh = False) -> BucketList:
        reader: LakeReader = request.app.state.lake
        summaries = []
        for bucket in reader.buckets:
            try:
                with aws_errors(f"listing {bucket}"):
                    summaries.append(_summary(reader.scan(bucket, fresh=fresh)))
            except (NotFound, Unavailable) as exc:
                summaries.append(
                    BucketSummary(
                        bucket=bucket,
                        objects=0,
                        bytes=0,
                        listed_at=0,
                        age_seconds=0,
                        list_calls=0,
                        error=exc.message,
                    )
                )
        return BucketList(buckets=summaries)

    @router.get("/{bucket}", summary="Objects and bytes of one bucket, over all its objects")
    def get_bucket(request: Request, bucket: BucketName, fresh: Fresh = False) -> BucketSummary:
        with aws_errors(f"listing {bucket}"):
            return _summary(request.app.state.lake.scan(bucket, fresh=fresh))

    @router.get("/{bucket}/list", summary="One page of a folder view (Delimiter '/')")
    def list_level(
        request: Request,
        bucket: BucketName,
        prefix: Prefix = "",
        token: Token = None,
        limit: PageSize = DEFAULT_PAGE_SIZE,
    ) -> ListingPage:
        with aws_errors(f"listing {bucket}/{prefix}"):
            return ListingPage(**request.app.state.lake.list_level(bucket, prefix, token, limit))

    @router.get("/{bucket}/partitions", summary="Service -> day -> hour partition analysis")
    def get_partitions(
        request: Request, bucket: BucketName, service: ServiceFilter = None, fresh: Fresh = False
    ) -> PartitionTree:
        settings: Settings = request.app.state.settings
        reader: LakeReader = request.app.state.lake
        with aws_errors(f"analysing {bucket}"):
            tree = partitions.analyse(
                reader,
                reader.scan(bucket, fresh=fresh),
                service=service,
                small_file_bytes=settings.dashboard_small_file_bytes,
                count_budget=settings.dashboard_count_budget_bytes,
                max_s3_calls=settings.dashboard_partition_s3_calls,
                max_inflated=settings.dashboard_max_decompressed_bytes,
            )
        return PartitionTree(**tree)

    @router.get("/{bucket}/object", summary="The first lines of an object (ranged reads)")
    def get_object_lines(
        request: Request,
        bucket: BucketName,
        key: Key,
        lines: Lines = 50,
    ) -> LogExcerpt:
        settings: Settings = request.app.state.settings
        reader: LakeReader = request.app.state.lake
        reader.check_bucket(bucket)
        if lines > settings.dashboard_viewer_max_lines:
            raise Unprocessable(
                f"lines must be at most {settings.dashboard_viewer_max_lines} "
                "(DASHBOARD_VIEWER_MAX_LINES)"
            )
        with aws_errors(f"reading {bucket}/{key}"):
            excerpt = read_first_lines(
                reader.s3,
                bucket,
                key,
                lines,
                settings.dashboard_viewer_max_bytes,
                max_inflated=settings.dashboard_max_decompressed_bytes,
            )
        entries = [parse_line(number, line) for number, line in enumerate(excerpt.lines, 1)]
        return LogExcerpt(
            bucket=bucket,
            key=key,
            lines_requested=lines,
            lines=entries,
            anomalous=sum(1 for e in entries if e["anomalous"]),
            bytes_read=excerpt.bytes_read,
            range_requests=excerpt.requests,
            object_size=excerpt.object_size,
            complete=excerpt.complete,
            truncated=excerpt.truncated,
            reason=excerpt.reason,
            decompressed_bytes=excerpt.inflated,
        )

    return router


def _describe(request: Request, specs: tuple[resources.StreamSpec, ...]) -> list[dict[str, Any]]:
    state = request.app.state
    return streams.describe_streams(
        state.kinesis, state.leases, specs, state.probe.metrics(), state.sampler.latest()
    )


def _pipeline_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["pipeline"])

    @router.get("/config", summary="What the page needs to know: refresh period, bounds, names")
    def get_config(request: Request) -> DashboardConfig:
        settings: Settings = request.app.state.settings
        return DashboardConfig(
            refresh_seconds=settings.dashboard_refresh_seconds,
            sample_seconds=settings.dashboard_sample_seconds,
            viewer_max_lines=settings.dashboard_viewer_max_lines,
            buckets=list(request.app.state.lake.buckets),
            streams=[spec.name for spec in resources.streams(settings)],
        )

    @router.get("/streams", summary="Kinesis streams: status, shards, rate, lag per shard")
    def get_streams(request: Request) -> StreamList:
        views = _describe(request, resources.streams(request.app.state.settings))
        return StreamList(streams=[StreamView(**view) for view in views])

    @router.get("/streams/{stream}", summary="One configured Kinesis stream")
    def get_stream(request: Request, stream: StreamName) -> StreamView:
        settings: Settings = request.app.state.settings
        try:
            spec = resources.stream_by_name(settings, stream)
        except KeyError:
            raise NotFound(
                f"stream {stream!r} is not one of the dashboard's streams",
                detail={"streams": [s.name for s in resources.streams(settings)]},
            ) from None
        return StreamView(**_describe(request, (spec,))[0])

    @router.get("/consumer", summary="The real consumer's state, from its /health and /metrics")
    def get_consumer(request: Request) -> ConsumerStatus:
        return ConsumerStatus(**request.app.state.probe.status())

    @router.get("/timeseries", summary="Sampled throughput and lag for the live charts")
    def get_timeseries(request: Request, points: SeriesPoints = 360) -> TimeSeries:
        return TimeSeries(**request.app.state.sampler.series(points))

    return router


@contextmanager
def lake_errors(what: str) -> Iterator[None]:
    """Like :func:`aws_errors`, for pyiceberg, whose file reads fail as ``OSError``."""
    with aws_errors(what):
        try:
            yield
        except OSError as exc:
            raise Unavailable(f"{what}: {exc}", retry_after=5) from exc


def _table_stats(request: Request) -> TableStats:
    """The catalog is opened on first use: pyiceberg costs the dashboard memory and start-up
    time that a lake without curated tables should not pay."""
    state = request.app.state
    with state.tables_lock:
        if state.tables is None:
            from stages.common.lakehouse import open_catalog

            # The catalog takes the region from AWS_DEFAULT_REGION alone; give it the one every
            # other client resolves (AWS_REGION, the profile, us-east-1).
            settings = state.settings.model_copy(
                update={"aws_default_region": aws.region(state.settings)}
            )
            catalog = open_catalog(settings)
            # The project's client (two attempts, 5 s connect timeout) instead of pyiceberg's ten
            # retries with backoff: an unreachable catalog must fail the panel within a refresh.
            catalog.glue = aws.client("glue", settings)
            state.tables = TableStats(catalog)
        return state.tables


def _tables_router() -> APIRouter:
    router = APIRouter(prefix="/api/tables", tags=["tables"])

    @router.get(
        "",
        summary="The curated lake's Iceberg tables: rows, files, freshness, last commit",
        responses={503: {"description": "The Glue catalog or S3 did not answer."}},
    )
    def list_tables(request: Request) -> TableList:
        with lake_errors("reading the Glue catalog"):
            return TableList(**_table_stats(request).overview())

    @router.get(
        "/{name}",
        summary="One table of the curated lake",
        responses={404: {"description": "No such table in the namespace."}},
    )
    def get_table(request: Request, name: TableName) -> TableView:
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        stats = _table_stats(request)
        try:
            with lake_errors(f"reading table {name}"):
                return TableView(**stats.describe(name))
        except (NoSuchTableError, NoSuchNamespaceError):
            raise NotFound(
                f"no table {name!r} in {stats.namespace}",
                detail={"tables": stats.table_names()},
            ) from None
        except UNREADABLE as exc:
            with lake_errors("reading the Glue catalog"):
                listed = stats.table_names()
            if name not in listed:
                # A Glue table of another kind (a crawler's JSON table): not one of the lake's.
                raise NotFound(
                    f"{name!r} in {stats.namespace} is not an Iceberg table",
                    detail={"tables": listed},
                ) from None
            # An Iceberg table whose metadata cannot be read: its row, with the reason.
            return TableView(**stats.unreadable(name, exc))

    return router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    page = PAGE_HTML.read_text()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        specs = resources.streams(settings)
        app.state.settings = settings
        app.state.lake = LakeReader(
            aws.client("s3", settings),
            resources.buckets(settings),
            cache_seconds=settings.dashboard_cache_seconds,
        )
        app.state.kinesis = aws.client("kinesis", settings)
        app.state.leases = ShardLeaseTable(aws.client("dynamodb", settings), settings.lease_table)
        app.state.probe = ConsumerProbe(settings.service_url("consumer"))
        app.state.sampler = Sampler(
            app.state.probe.metrics,
            tuple(spec.name for spec in specs),
            period=settings.dashboard_sample_seconds,
            capacity=settings.dashboard_history_samples,
        )
        app.state.tables = None
        app.state.tables_lock = threading.Lock()
        app.state.sampler.start()
        try:
            yield
        finally:
            app.state.sampler.stop()
            app.state.probe.close()

    def health() -> tuple[bool, dict[str, Any]]:
        return True, {
            "buckets": list(resources.buckets(settings)),
            "streams": [spec.name for spec in resources.streams(settings)],
        }

    app = create_service_app(
        "dashboard",
        health=health,
        routers=[_bucket_router(), _pipeline_router(), _tables_router()],
        lifespan=lifespan,
        status_page=False,
        description="Read-only views of the pipeline: streams, buckets, partitions, objects, "
        "the consumer; live throughput and lag; the curated lake's Iceberg tables.",
    )

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def get_page() -> HTMLResponse:
        return html_page(page)

    app.mount(
        "/static/dashboard", StaticFiles(directory=PACKAGE_DIR / "static"), name="dashboard-static"
    )
    return app


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    run_service(create_app(settings), settings.dashboard_host, settings.dashboard_port)

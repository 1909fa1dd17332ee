"""The dashboard's curated-tables API against real Iceberg tables in the emulator's Glue catalog.

Every figure is checked against what was written (rows, partitions) or against S3 itself (the
data files' bytes), never against another reading of the same metadata.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.lakehouse import FEATURES_LOCATION, FEATURES_TABLE
from stages.detection.events_table import ARROW_SCHEMA as anomalies_schema
from stages.detection.events_table import ensure_anomalies_table
from stages.etl.features import FeatureBuilder
from stages.etl.tables import NAMESPACE, PROCESSED_BUCKET, ensure_tables, open_catalog
from tests.dashboard.helpers import DashboardProcess
from tests.support.processes import free_port
from tests.support.tables import fill_tables, plain

BAD_LINES = (b"{not json", b'{"kind": "log", "service": "api-gateway", "timestamp": "nope"}')


def _data_objects(s3: Any, table: str) -> list[int]:
    prefix = f"{NAMESPACE}/{table}/data/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=PROCESSED_BUCKET, Prefix=prefix)
    return [obj["Size"] for page in pages for obj in page.get("Contents", [])]


def test_tables_from_metadata_before_and_after_commits(
    dashboard: DashboardProcess, lake_endpoint: str, s3: Any
) -> None:
    empty = dashboard.json("/api/tables")
    assert empty["namespace"] == NAMESPACE
    assert empty["tables"] == [] and empty["quarantined_rows"] is None

    settings = Settings(aws_endpoint_url=lake_endpoint)
    before = time.time()
    lake = fill_tables(settings, count=2500, bad_lines=BAD_LINES)
    after = time.time()
    typed = lake.typed
    view = dashboard.json("/api/tables")
    tables = {t["name"]: t for t in view["tables"]}
    assert set(tables) == {"logs", "metrics", "apm", "quarantine"}
    assert view["quarantined_rows"] == 2 == tables["quarantine"]["rows"]

    expected_rows = {"logs": "log", "metrics": "metric", "apm": "apm"}
    for name, kind in expected_rows.items():
        table = tables[name]
        data = typed.tables[kind]
        partitions = set(
            zip(plain(data["service"]), plain(data["dt"]), plain(data["hr"]), strict=True)
        )
        sizes = _data_objects(s3, name)
        assert table["rows"] == data.num_rows, name
        assert table["data_files"] == len(partitions) == len(sizes), name
        assert table["total_bytes"] == sum(sizes), name
        assert table["avg_file_bytes"] == sum(sizes) // len(sizes), name
        assert table["snapshots"] == 1 and table["operation"] == "append", name
        assert table["partitioned_by"] == ["service", "dt", "hr"]
        assert table["identifier"] == f"{NAMESPACE}.{name}"
        assert table["location"] == f"s3://{PROCESSED_BUCKET}/{NAMESPACE}/{name}"
        assert before - 1 <= time.time() - table["last_commit_age_seconds"] <= time.time()
        assert table["last_commit_age_seconds"] <= time.time() - before + 1
        newest = pc.max(data["timestamp"]).as_py()
        assert table["event_time_column"] == "timestamp"
        assert table["newest"] == newest.isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        ), name
        assert abs(table["freshness_seconds"] - (time.time() - newest.timestamp())) < 60
        assert table["error"] is None
    assert after >= before

    # A second commit: the figures follow the new snapshot (and its newer event times).
    more = fill_tables(settings, count=600, seed=99, start="2026-03-02T12:00:00Z")
    logs = dashboard.json("/api/tables/logs")
    assert logs["rows"] == typed.tables["log"].num_rows + more.typed.tables["log"].num_rows
    assert logs["snapshots"] == 2
    assert logs["newest"].startswith("2026-03-02T")
    assert logs["data_files"] == len(_data_objects(s3, "logs"))


def test_unknown_and_malformed_table_names(dashboard: DashboardProcess, lake_endpoint: str) -> None:
    ensure_tables(open_catalog(Settings(aws_endpoint_url=lake_endpoint)))
    missing = dashboard.get("/api/tables/no_such_table")
    assert missing.status_code == 404
    body = missing.json()
    assert "no_such_table" in body["message"]
    assert set(body["detail"]["tables"]) >= {"logs", "metrics", "apm", "quarantine"}
    assert dashboard.get("/api/tables/Not-A-Name").status_code == 422


def test_a_broken_table_is_reported_in_its_row_and_hides_no_other(
    dashboard: DashboardProcess, lake_endpoint: str
) -> None:
    ensure_tables(open_catalog(Settings(aws_endpoint_url=lake_endpoint)))
    glue = aws.client("glue", Settings(aws_endpoint_url=lake_endpoint))
    glue.create_table(
        DatabaseName=NAMESPACE,
        TableInput={
            "Name": "broken",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                "table_type": "ICEBERG",
                "metadata_location": f"s3://{PROCESSED_BUCKET}/nowhere/v1.metadata.json",
            },
        },
    )
    view = dashboard.json("/api/tables")
    tables = {t["name"]: t for t in view["tables"]}
    assert tables["broken"]["error"]
    assert tables["logs"]["error"] is None and tables["logs"]["location"]
    assert Counter(t["name"] for t in view["tables"])["broken"] == 1


def test_glue_tables_the_dashboard_cannot_read_are_a_row_or_a_404_never_a_500(
    dashboard: DashboardProcess, lake_endpoint: str
) -> None:
    settings = Settings(aws_endpoint_url=lake_endpoint)
    ensure_tables(open_catalog(settings))
    glue = aws.client("glue", settings)
    aws.client("s3", settings).put_object(
        Bucket=PROCESSED_BUCKET, Key="garbled/v1.metadata.json", Body=b"not json\n"
    )
    entries = {
        # what a Glue crawler makes over the raw zone: not an Iceberg table
        "crawled": {"classification": "json"},
        # an Iceberg entry without its metadata file's location
        "half_made": {"table_type": "ICEBERG"},
        # an Iceberg entry whose metadata file is not Iceberg metadata
        "garbled": {
            "table_type": "ICEBERG",
            "metadata_location": f"s3://{PROCESSED_BUCKET}/garbled/v1.metadata.json",
        },
    }
    for name, parameters in entries.items():
        glue.create_table(
            DatabaseName=NAMESPACE, TableInput={"Name": name, "Parameters": parameters}
        )

    overview = dashboard.get("/api/tables")
    assert overview.status_code == 200, overview.text
    rows = {t["name"]: t for t in overview.json()["tables"]}
    assert "metadata_location is missing" in rows["half_made"]["error"]
    assert "ValidationError" in rows["garbled"]["error"]
    assert "crawled" not in rows
    assert rows["logs"]["error"] is None and rows["logs"]["location"]

    for name in ("half_made", "garbled"):
        one = dashboard.get(f"/api/tables/{name}")
        assert one.status_code == 200, one.text
        assert one.json()["error"] == rows[name]["error"]
    crawled = dashboard.get("/api/tables/crawled")
    assert crawled.status_code == 404, crawled.text
    assert crawled.json()["message"] == "'crawled' in telemetry is not an Iceberg table"
    assert "logs" in crawled.json()["detail"]["tables"]


def test_an_unreachable_catalog_is_a_prompt_503(tmp_path: Path) -> None:
    dashboard = DashboardProcess(f"http://127.0.0.1:{free_port()}", tmp_path)
    try:
        dashboard.wait_healthy(60)
        began = time.monotonic()
        answer = dashboard.get("/api/tables")
        elapsed = time.monotonic() - began
    finally:
        dashboard.stop()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert "Glue catalog" in answer.json()["message"]
    # Within one page refresh, not after pyiceberg's own ten retries with backoff.
    assert elapsed < 10


def test_the_features_table_shows_its_newest_bucket_as_freshness(
    dashboard: DashboardProcess, lake_endpoint: str
) -> None:
    settings = Settings(aws_endpoint_url=lake_endpoint)
    lake = fill_tables(settings, count=400, seed=31, start="2026-03-03T08:00:00Z")
    touched = set()
    newest_record = None
    for kind, name in (("log", "logs"), ("metric", "metrics"), ("apm", "apm")):
        data = lake.typed.tables[kind]
        for service, dt, hr in zip(
            plain(data["service"]), plain(data["dt"]), plain(data["hr"]), strict=True
        ):
            touched.add((name, service, dt, hr))
        latest = pc.max(data["timestamp"]).as_py()
        newest_record = latest if newest_record is None else max(newest_record, latest)
    # Long past their watermark: every bucket of these hours is written.
    report = FeatureBuilder(open_catalog(settings), settings).after_commit(
        touched, datetime.now(UTC)
    )
    assert report.written and not report.failed

    features = dashboard.json("/api/tables/features")
    rows = open_catalog(settings).load_table(FEATURES_TABLE).scan().to_arrow()
    assert features["rows"] == rows.num_rows > 0
    assert features["location"] == FEATURES_LOCATION
    assert features["event_time_column"] == "bucket_start"
    newest_bucket = pc.max(rows["bucket_start"]).as_py()
    width = settings.features_bucket_seconds
    assert newest_bucket.timestamp() == newest_record.timestamp() // width * width
    assert features["newest"] == newest_bucket.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    assert abs(features["freshness_seconds"] - (time.time() - newest_bucket.timestamp())) < 60
    listed = {t["name"]: t for t in dashboard.json("/api/tables")["tables"]}
    assert listed["features"]["newest"] == features["newest"]


def test_the_anomalies_table_shows_its_newest_recorded_transition_as_freshness(
    dashboard: DashboardProcess, lake_endpoint: str
) -> None:
    settings = Settings(aws_endpoint_url=lake_endpoint)
    table = ensure_anomalies_table(open_catalog(settings), resources.models_bucket(settings))
    recorded = [datetime(2026, 3, 4, 10, 0, tzinfo=UTC), datetime(2026, 3, 4, 10, 5, tzinfo=UTC)]
    columns = {
        field.name: [None] * len(recorded)
        for field in anomalies_schema
        if field.name != "recorded_at"
    }
    table.append(pa.table({**columns, "recorded_at": recorded}, schema=anomalies_schema))

    view = dashboard.json("/api/tables/anomalies")
    assert view["rows"] == 2
    assert view["event_time_column"] == "recorded_at"
    assert view["newest"] == "2026-03-04T10:05:00.000Z"
    assert abs(view["freshness_seconds"] - (time.time() - recorded[1].timestamp())) < 60

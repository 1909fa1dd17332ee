"""``python -m stages.etl backfill`` answers every failure with a message and a non-zero exit,
never a traceback, and never exits 0 with a table it did not rebuild."""

from __future__ import annotations

import subprocess
import sys

from stages.common import aws, lake
from stages.common.config import Settings
from tests.etl.support import RawLake, records, table_counts
from tests.support.processes import ROOT, base_env, free_port


def _backfill(endpoint: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stages.etl", "backfill", *args],
        env=base_env(endpoint, **{"ETL_LEASE_SECONDS": "2", **env}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_an_unreachable_lake_is_a_message_and_exit_1() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = _backfill(dead, "--from", "2026-11-27T06", "--to", "2026-11-27T07")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "error: the lake (Glue, S3 or the lease table) failed" in done.stderr
    assert "Could not connect to the endpoint URL" in done.stderr


def test_a_range_within_one_hour_says_the_hours_it_compared() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = _backfill(dead, "--from", "2026-11-27T06:30", "--to", "2026-11-27T06:45")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "error: --to must be after --from (as whole UTC hours: --from 2026-11-27T06, "
        "--to 2026-11-27T06, which is not included)"
    )


def test_an_invalid_setting_is_a_message_and_exit_2() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    args = ("--from", "2026-11-27T06", "--to", "2026-11-27T07")
    done = _backfill(dead, *args, ETL_LEASE_SECONDS="-5")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: invalid setting: ETL_LEASE_SECONDS: "), done.stderr
    assert "Traceback" not in done.stderr


def test_an_object_that_is_not_gzip_is_a_message_and_exit_1(
    lake_settings: Settings, lake_endpoint: str
) -> None:
    raw = RawLake(lake_settings)
    key = raw.put_object("log", "auth-service", "year=2026/month=11/day=27/hour=06", b"")
    s3 = aws.client("s3", lake_settings)
    s3.delete_object(Bucket="md-raw-logs", Key=key)
    named_gzip = key.replace(".jsonl", ".jsonl.gz")
    s3.put_object(Bucket="md-raw-logs", Key=named_gzip, Body=b'{"plain": "text"}\n')
    done = _backfill(lake_endpoint, "--from", "2026-11-27T06", "--to", "2026-11-27T07")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"error: object '{named_gzip}' is not valid gzip" in done.stderr


def test_a_features_table_that_cannot_be_written_fails_the_backfill(
    lake_settings: Settings, lake_endpoint: str
) -> None:
    raw = RawLake(lake_settings)
    raw.put(records(60, 5, "2026-11-27T06:20:00Z"))
    s3 = aws.client("s3", lake_settings)
    bucket = "md-features"
    for obj in lake.list_objects(s3, bucket):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)
    try:
        done = _backfill(lake_endpoint, "--from", "2026-11-27T06", "--to", "2026-11-27T07")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert "error:" in done.stderr and bucket in done.stderr
        # The curated tables were rebuilt before the features step failed.
        counts = table_counts(lake_settings)
        assert sum(sum(c.values()) for c in counts.values()) == len(raw.sent)
    finally:
        s3.create_bucket(Bucket=bucket)


def test_a_service_whose_raw_objects_are_gone_keeps_its_rows(
    lake_settings: Settings, lake_endpoint: str
) -> None:
    raw = RawLake(lake_settings)
    raw.put(records(120, 9, "2026-11-27T06:20:00Z"))
    args = ("--from", "2026-11-27T06", "--to", "2026-11-27T07")
    first = _backfill(lake_endpoint, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    before = table_counts(lake_settings)
    assert sum(before["logs"].values()) > 0

    # The raw objects of one service expire (a lifecycle rule): nothing to rebuild it from.
    gone = next(key for key in raw.keys if key.startswith("service="))
    service = gone.split("/", 1)[0].removeprefix("service=")
    s3 = aws.client("s3", lake_settings)
    for bucket in ("md-raw-logs", "md-raw-metrics", "md-raw-apm"):
        for obj in lake.list_objects(s3, bucket, f"service={service}/"):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])

    again = _backfill(lake_endpoint, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert table_counts(lake_settings) == before
    kept = again.stdout.split("kept, no raw objects left: ", 1)[1].strip()
    assert kept == f"apm {service}, logs {service}, metrics {service}"

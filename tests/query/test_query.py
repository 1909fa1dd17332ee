"""``python -m stages.query`` against real Iceberg tables in the emulator's Glue catalog and S3.

One emulator and one set of tables for the module (the tables are only read); every query runs
the command as a user does, in a child process whose HOME holds no DuckDB extension cache and
whose proxy settings point at a closed port, so an extension DuckDB tried to download would fail.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, NestedField, StringType, TimestamptzType

from stages.common.config import Settings
from stages.etl.tables import FEATURES_BUCKET, NAMESPACE, open_catalog
from tests.support.processes import base_env, free_port, start_emulator
from tests.support.tables import FilledLake, fill_tables, plain

BAD_LINE = b'{"kind": "log", "service": "api-gateway", "timestamp": "not a time"}'


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FilledLake, Path]]:
    logs = tmp_path_factory.mktemp("logs")
    emulator, endpoint = start_emulator(logs)
    try:
        settings = Settings(aws_endpoint_url=endpoint)
        filled = fill_tables(settings, count=3000, bad_lines=(BAD_LINE, b"{not json"))
        # A table of another writer, elsewhere in S3, shows up by its name too.
        catalog = open_catalog(settings)
        features = catalog.create_table(
            f"{NAMESPACE}.features",
            schema=Schema(
                NestedField(1, "bucket_start", TimestamptzType(), required=False),
                NestedField(2, "service", StringType(), required=False),
                NestedField(3, "signal", StringType(), required=False),
                NestedField(4, "value", DoubleType(), required=False),
            ),
            location=f"s3://{FEATURES_BUCKET}/{NAMESPACE}/features",
        )
        features.append(
            pa.table(
                {
                    "bucket_start": pa.array(
                        [1_772_357_400_000_000] * 2, pa.timestamp("us", tz="UTC")
                    ),
                    "service": ["api-gateway", "auth-service"],
                    "signal": ["log.count.ERROR", "log.count.ERROR"],
                    "value": [3.0, 1.0],
                }
            )
        )
        home = tmp_path_factory.mktemp("home")
        yield endpoint, filled, home
    finally:
        emulator.stop()


def _query(
    lake: tuple[str, FilledLake, Path], *args: str, module: str = "stages.query", **env: str
) -> subprocess.CompletedProcess[str]:
    endpoint, _, home = lake
    closed = f"http://127.0.0.1:{free_port()}"
    child_env = base_env(
        endpoint,
        HOME=str(home),
        HTTP_PROXY=closed,
        HTTPS_PROXY=closed,
        NO_PROXY="127.0.0.1,localhost",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _json(lake: tuple[str, FilledLake, Path], sql: str) -> list[dict]:
    done = _query(lake, "--format", "json", sql)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_count_by_service_and_level_matches_what_was_written(lake) -> None:
    logs = lake[1].typed.tables["log"]
    expected = Counter(zip(plain(logs["service"]), plain(logs["level"]), strict=True))
    assert len(expected) > 5
    rows = _json(
        lake,
        "SELECT service, level, count(*) AS n FROM telemetry.logs GROUP BY service, level",
    )
    assert {(r["service"], r["level"]): r["n"] for r in rows} == dict(expected)


def test_every_table_is_reachable_by_its_name(lake) -> None:
    typed = lake[1].typed
    rows = _json(
        lake,
        "SELECT 'logs' AS t, count(*) AS n FROM telemetry.logs "
        "UNION ALL SELECT 'metrics', count(*) FROM telemetry.metrics "
        "UNION ALL SELECT 'apm', count(*) FROM apm "
        "UNION ALL SELECT 'quarantine', count(*) FROM telemetry.quarantine "
        "UNION ALL SELECT 'features', count(*) FROM telemetry.features",
    )
    assert {r["t"]: r["n"] for r in rows} == {
        "logs": typed.tables["log"].num_rows,
        "metrics": typed.tables["metric"].num_rows,
        "apm": typed.tables["apm"].num_rows,
        "quarantine": 2,
        "features": 2,
    }
    reasons = _json(lake, "SELECT reason FROM telemetry.quarantine ORDER BY line_number")
    assert all(r["reason"] for r in reasons)


def test_typed_columns_come_back_typed(lake) -> None:
    metrics = lake[1].typed.tables["metric"]
    rows = _json(
        lake,
        "SELECT event_id, value, timestamp, is_anomaly FROM telemetry.metrics ORDER BY event_id",
    )
    by_id = dict(zip(plain(metrics["event_id"]), metrics["value"].to_pylist(), strict=True))
    assert {r["event_id"]: r["value"] for r in rows} == by_id
    assert all(r["timestamp"].endswith("Z") or "+00" in r["timestamp"] for r in rows)
    assert {r["is_anomaly"] for r in rows} <= {True, False, None}


def test_aligned_table_and_csv_output(lake) -> None:
    sql = "SELECT level, count(*) AS n FROM logs GROUP BY level ORDER BY level"
    expected = Counter(plain(lake[1].typed.tables["log"]["level"]))

    table = _query(lake, sql)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["level", "n"]
    assert set(lines[1]) == {"-", " "}
    body = [line.split() for line in lines[2:-1]]
    assert {level: int(n) for level, n in body} == dict(expected)
    # Numbers are right-aligned: every count ends in the same column.
    assert len({len(line) for line in lines[2:-1]}) == 1
    assert lines[-1] == f"({len(expected)} rows)"

    done = _query(lake, "--format", "csv", sql)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {r["level"]: int(r["n"]) for r in rows} == dict(expected)


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("SELEC count(*) FROM telemetry.logs", "syntax error"),
        ("SELECT count(*) FROM telemetry.no_such_table", "no_such_table"),
        ("SELECT no_such_column FROM telemetry.logs", "no_such_column"),
    ],
)
def test_bad_queries_exit_2_with_the_reason_and_no_traceback(lake, sql, needle) -> None:
    done = _query(lake, sql)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "query failed" in done.stderr
    assert needle in done.stderr.lower()
    assert "Traceback" not in done.stderr


def test_bad_options_exit_2(lake) -> None:
    done = _query(lake, "--format", "xml", "SELECT 1")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
    empty = _query(lake, "   ")
    assert empty.returncode == 2
    assert "empty" in empty.stderr


def test_a_missing_table_names_the_lakes_tables(lake) -> None:
    done = _query(lake, "SELECT count(*) FROM telemetry.no_such_table")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[-1] == (
        "stages-query: the lake's tables: telemetry.apm, telemetry.features, telemetry.logs, "
        "telemetry.metrics, telemetry.quarantine"
    )
    assert "Traceback" not in done.stderr


def test_an_invalid_setting_exits_2_naming_the_variable(lake) -> None:
    done = _query(lake, "SELECT 1", QUERY_THREADS="many")
    assert done.returncode == 2
    assert done.stderr.startswith("stages-query: invalid setting: QUERY_THREADS: ")
    assert "'many'" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_catalog_exits_1_with_a_message(lake) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = _query(lake, "SELECT 1", AWS_ENDPOINT_URL=dead)
    assert done.returncode == 1
    assert "lake unavailable" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("build", "needle"),
    [(None, "has no build for DuckDB"), (b"not an extension", "iceberg.duckdb_extension")],
)
def test_an_extension_that_does_not_load_exits_1_with_a_message(
    lake, tmp_path: Path, build: bytes | None, needle: str
) -> None:
    """The extensions load while the catalog is read; a failure there is still the lake's."""
    package = tmp_path / "duckdb_extension_iceberg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    if build is not None:
        path = package / "extensions" / f"v{duckdb.__version__}" / "iceberg.duckdb_extension"
        path.parent.mkdir(parents=True)
        path.write_bytes(build)
    done = _query(lake, "SELECT count(*) FROM telemetry.logs", PYTHONPATH=str(tmp_path))
    assert done.returncode == 1
    assert "lake unavailable" in done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_duckdb_runs_query_threads_threads(lake) -> None:
    sql = "SELECT current_setting('threads') AS threads"
    assert _json(lake, sql) == [{"threads": 8}]
    done = _query(lake, "--format", "json", sql, QUERY_THREADS="3")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"threads": 3}]


def test_partition_filter_prunes_data_files(lake) -> None:
    logs = lake[1].typed.tables["log"]
    partitions = Counter(
        zip(plain(logs["service"]), plain(logs["dt"]), plain(logs["hr"]), strict=True)
    )
    (service, dt, hr), count = partitions.most_common(1)[0]
    assert len(partitions) > 3

    def run(sql: str) -> tuple[int, int]:
        done = _query(lake, "--stats", "--format", "csv", sql)
        assert done.returncode == 0, done.stderr
        n = int(done.stdout.splitlines()[1])
        stats = dict(
            line.split(": ", 1)
            for line in done.stderr.splitlines()
            if line.startswith("data files")
        )
        return n, int(stats["data files"].split()[0])

    # count(level), not count(*): a bare count is answered from the manifests' row counts.
    everything = run("SELECT count(level) FROM telemetry.logs")
    one = run(
        "SELECT count(level) FROM telemetry.logs "
        f"WHERE service = '{service}' AND dt = DATE '{dt}' AND hr = {hr}"
    )
    assert everything == (logs.num_rows, len(partitions))
    assert one == (count, 1)


def test_stats_report_requests_and_bytes_read(lake) -> None:
    done = _query(lake, "--stats", "SELECT count(*) FROM telemetry.logs")
    assert done.returncode == 0, done.stderr
    # Only the tables the query names are opened.
    assert "tables: telemetry.logs\n" in done.stderr
    s3_line = next(line for line in done.stderr.splitlines() if line.startswith("S3:"))
    read = int(s3_line.split(", ")[-1].split()[0])
    assert read > 0


def test_the_stages_query_subcommand(lake) -> None:
    done = _query(lake, "query", "SELECT count(*) AS n FROM telemetry.apm", module="stages.ops.cli")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2].strip() == str(lake[1].typed.tables["apm"].num_rows)

"""DuckDB over the curated lake's current Iceberg tables.

The tables live in the Glue Data Catalog (the emulator's, LocalStack's or AWS's): one
``GetTables`` call gives each table's current metadata file, and each table becomes a DuckDB view
``<namespace>.<table>`` over ``iceberg_scan(<metadata file>)``. DuckDB then reads the manifests
and Parquet files itself through httpfs, so a filter on a partition column (``service``, ``dt``,
``hr``) skips the data files whose partition cannot match, and only the columns a query names are
fetched (ranged GETs).

A query sees the snapshot that was current when the command started; a commit during the query
does not change its answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import duckdb
from botocore.exceptions import BotoCoreError, ClientError

from stages.common import aws
from stages.common.config import Settings
from stages.common.lakehouse import NAMESPACE
from stages.query import extensions, stats

# Glue names are lower-case letters, digits and underscores; anything else is not made a view
# (it would need quoting, and no table of this project is named so).
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")


class QueryError(Exception):
    """A query the lake cannot answer as asked: bad SQL, an unknown table or column."""


class LakeUnavailable(Exception):
    """The catalog or the object store did not answer (endpoint down, credentials refused)."""


@dataclass(frozen=True)
class LakeTable:
    namespace: str
    name: str
    metadata_location: str

    @property
    def identifier(self) -> str:
        return f"{self.namespace}.{self.name}"


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def iceberg_tables(settings: Settings, namespace: str = NAMESPACE) -> list[LakeTable]:
    """The Iceberg tables Glue lists in ``namespace``, each with its current metadata file."""
    glue = aws.client("glue", settings)
    found: list[LakeTable] = []
    try:
        for page in glue.get_paginator("get_tables").paginate(DatabaseName=namespace):
            for table in page["TableList"]:
                params = table.get("Parameters") or {}
                location = params.get("metadata_location")
                if params.get("table_type", "").upper() != "ICEBERG" or not location:
                    continue
                if _NAME.match(table["Name"]):
                    found.append(LakeTable(namespace, table["Name"], location))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "EntityNotFoundException":
            # No database yet: nothing has created the tables; every query will say which
            # table is missing.
            return []
        raise LakeUnavailable(f"Glue catalog: {exc}") from exc
    except BotoCoreError as exc:
        raise LakeUnavailable(f"Glue catalog: {exc}") from exc
    return sorted(found, key=lambda t: t.name)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def s3_secret_sql(settings: Settings) -> str:
    """``CREATE SECRET`` for httpfs: the same endpoint, region and credential chain as the
    project's boto3 clients (``stages.common.aws``)."""
    options = {"TYPE": "s3", "REGION": _literal(aws.region(settings))}
    credentials = aws._shared_session().get_credentials()
    endpoint = settings.aws_endpoint_url
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options["KEY_ID"] = _literal(frozen.access_key)
        options["SECRET"] = _literal(frozen.secret_key)
        if frozen.token:
            options["SESSION_TOKEN"] = _literal(frozen.token)
    elif endpoint and aws.is_local_endpoint(endpoint):
        # The emulator accepts any key; the same defaults as stages.common.aws.client.
        options["KEY_ID"] = _literal("test")
        options["SECRET"] = _literal("test")
    if endpoint:
        parsed = urlparse(endpoint)
        options["ENDPOINT"] = _literal(parsed.netloc)
        options["USE_SSL"] = "true" if parsed.scheme == "https" else "false"
        options["URL_STYLE"] = _literal("path" if aws.needs_path_style(endpoint) else "vhost")
    body = ", ".join(f"{key} {value}" for key, value in options.items())
    return f"CREATE OR REPLACE SECRET lake_s3 ({body})"


def named_in(sql: str, tables: list[LakeTable]) -> list[LakeTable]:
    """The tables whose name occurs as a word in ``sql``: a query can only read a table it
    names, and each view costs its table's metadata reads when it is created."""
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
    return [t for t in tables if t.name in words]


def connect(
    settings: Settings,
    tables: list[LakeTable] | None = None,
    *,
    log_http: bool = False,
    con: duckdb.DuckDBPyConnection | None = None,
) -> tuple[duckdb.DuckDBPyConnection, list[LakeTable]]:
    """A DuckDB connection in which every lake table is a view named ``<namespace>.<table>``.

    The namespace is also on the search path, so ``logs`` means ``telemetry.logs``. With
    ``log_http``, every S3 request from here on is in DuckDB's HTTP log (``stages.query.stats``).
    ``con`` is a connection from ``extensions.connect()`` to use (a new one by default).
    """
    if tables is None:
        tables = iceberg_tables(settings)
    try:
        con = _open(settings, tables, log_http, con or extensions.connect())
    except duckdb.Error as exc:
        # A metadata file that cannot be read, an extension that does not load: not the query.
        raise LakeUnavailable(_message(exc)) from exc
    return con, tables


def _open(
    settings: Settings,
    tables: list[LakeTable],
    log_http: bool,
    con: duckdb.DuckDBPyConnection,
) -> duckdb.DuckDBPyConnection:
    if log_http:
        stats.enable(con)
    con.execute(s3_secret_sql(settings))
    namespaces = sorted({t.namespace for t in tables} | {NAMESPACE})
    for namespace in namespaces:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {namespace}")
    for table in tables:
        # Creating the view reads the table's metadata file, manifest list and manifests (DuckDB
        # binds a view's columns); data files are read by the query.
        con.execute(
            f"CREATE VIEW {table.identifier} AS "
            f"SELECT * FROM iceberg_scan({_literal(table.metadata_location)})"
        )
    con.execute(f"SET search_path = {_literal(','.join([*namespaces, 'main']))}")
    # Each DuckDB thread scanning remote files has one ranged GET in flight at a time.
    con.execute(f"SET threads = {int(settings.query_threads)}")
    # Timestamps print in UTC, as the lake stores them, whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str) -> Result:
    """Run one SQL text and fetch every row; DuckDB's errors become :class:`QueryError`
    (the caller's SQL) or :class:`LakeUnavailable` (the object store)."""
    try:
        relation = con.sql(sql)
        if relation is None:  # a statement with no result (SET, CREATE ...)
            return Result([], [], [])
        columns = list(relation.columns)
        types = [str(t) for t in relation.types]
        # Through Arrow: fast for many rows, and time zones without pytz.
        table = relation.to_arrow_table()
        rows = list(zip(*(column.to_pylist() for column in table.columns), strict=True))
    except (duckdb.HTTPException, duckdb.IOException) as exc:
        raise LakeUnavailable(_message(exc)) from exc
    except duckdb.Error as exc:
        raise QueryError(_message(exc)) from exc
    return Result(columns, types, rows)


def names_a_missing_table(message: str) -> bool:
    """Whether DuckDB's error says a table the query names does not exist."""
    return message.startswith("Catalog Error: Table with name") and "does not exist" in message


def _message(exc: BaseException) -> str:
    return str(exc).strip()

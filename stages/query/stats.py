"""What a query read from the object store, from DuckDB's own HTTP log.

Each HTTP request httpfs makes (HEAD, ranged GET) is logged with its response headers; the bytes
read are the ``Content-Length`` of the GET responses, i.e. what came over the wire, metadata and
manifests included.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class HttpStats:
    requests: int
    gets: int
    heads: int
    bytes_read: int
    data_files: int = 0


def enable(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CALL enable_logging('HTTP')")


def collect(con: duckdb.DuckDBPyConnection) -> HttpStats:
    row = con.execute(
        """
        SELECT count(*),
               count(*) FILTER (WHERE request.type = 'GET'),
               count(*) FILTER (WHERE request.type = 'HEAD'),
               coalesce(sum(TRY_CAST(response.headers['Content-Length'] AS BIGINT))
                        FILTER (WHERE request.type = 'GET'), 0),
               count(DISTINCT request.url) FILTER (WHERE request.url LIKE '%.parquet')
        FROM duckdb_logs_parsed('HTTP')
        """
    ).fetchone()
    assert row is not None
    return HttpStats(*(int(v) for v in row))

"""``python -m stages.query "SELECT ..."``: DuckDB SQL over the curated lake's Iceberg tables.

    python -m stages.query "SELECT service, level, count(*) FROM telemetry.logs GROUP BY ALL"
    python -m stages.query --format csv "SELECT * FROM telemetry.metrics LIMIT 10"
    echo "SELECT count(*) FROM logs" | python -m stages.query -

Every table of the Glue database ``telemetry`` is there by its name (``telemetry.logs``,
``telemetry.metrics``, ``telemetry.apm``, ``telemetry.quarantine``, ``telemetry.features``...),
and by its bare name too. Exit status: 0 with the result on stdout; 2 for a query the lake cannot
answer (bad SQL, unknown table or column) or bad options, with the reason on stderr; 1 when the
catalog or the object store cannot be reached.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import duckdb

from stages.query import extensions, output

PROG = "stages-query"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run DuckDB SQL over the curated lake's current Iceberg tables "
        "(telemetry.logs, telemetry.metrics, telemetry.apm, telemetry.quarantine, ...).",
    )
    parser.add_argument("sql", help="the SQL text; '-' reads it from standard input")
    parser.add_argument(
        "--format",
        choices=sorted(output.WRITERS),
        default="table",
        help="aligned table (default), CSV with a header, or a JSON array of objects",
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="also print to stderr: tables, seconds, S3 requests and bytes read",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    args = _parser(prog).parse_args(argv)
    sql = sys.stdin.read() if args.sql == "-" else args.sql
    if not sql.strip():
        print(f"{prog}: error: the SQL text is empty", file=sys.stderr)
        return 2
    began = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="duckdb-extensions") as pool:
        # Loading the extensions is DuckDB's own work (it checks each file's signature, ~84 MB,
        # outside the GIL) and needs nothing from the catalog, so it runs on a second core while
        # this thread imports the settings and boto3 and asks Glue for the tables.
        opening = pool.submit(extensions.connect)
        return _run(prog, args, sql, began, opening)


def _run(
    prog: str,
    args: argparse.Namespace,
    sql: str,
    began: float,
    opening: Future[duckdb.DuckDBPyConnection],
) -> int:
    # Imported here, not at the top: these imports (pydantic settings, boto3) overlap the
    # extension loading started by main().
    from pydantic import ValidationError

    from stages.common.config import describe_settings_error, get_settings
    from stages.query import engine, stats

    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"{prog}: invalid setting: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    try:
        listed = engine.iceberg_tables(settings)
        catalog_seconds = time.perf_counter() - began
        tables = engine.named_in(sql, listed)
        try:
            loaded = opening.result()
        except duckdb.Error as exc:
            raise engine.LakeUnavailable(str(exc).strip()) from exc
        con, _ = engine.connect(settings, tables, log_http=args.stats, con=loaded)
        query_began = time.perf_counter()
        result = engine.run(con, sql)
        query_seconds = time.perf_counter() - query_began
        http = stats.collect(con) if args.stats else None
    except engine.QueryError as exc:
        print(f"{prog}: query failed: {exc}", file=sys.stderr)
        if engine.names_a_missing_table(str(exc)):
            # DuckDB's "did you mean" offers its own system tables; the lake's are these.
            names = ", ".join(t.identifier for t in listed) or "none (the ETL has not run yet)"
            print(f"{prog}: the lake's tables: {names}", file=sys.stderr)
        return 2
    except (engine.LakeUnavailable, extensions.ExtensionMissing) as exc:
        print(f"{prog}: lake unavailable: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(output.render(result, args.format))
    if http is not None:
        names = ", ".join(t.identifier for t in tables) or "none"
        print(
            f"tables: {names}\n"
            f"query: {query_seconds:.3f} s, total: {time.perf_counter() - began:.3f} s "
            f"(settings and catalog {catalog_seconds:.3f} s, with the extensions loading "
            f"alongside; then extensions and views {query_began - began - catalog_seconds:.3f} s)\n"
            f"S3: {http.requests} requests ({http.gets} GET, {http.heads} HEAD), "
            f"{http.bytes_read} bytes read\n"
            f"data files: {http.data_files} read",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

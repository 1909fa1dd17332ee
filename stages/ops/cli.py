"""The ``stages`` command: one entry point for what the shell scripts do.

    stages start [SERVICE...]   ./start.sh [SERVICE...]      (stages.ops.fleet start)
    stages stop [SERVICE...]    ./stop.sh [SERVICE...]       (stages.ops.fleet stop)
    stages status [SERVICE...]  ./start.sh status            (stages.ops.fleet status)
    stages provision            python -m stages.ops.provision
    stages check [OPTIONS]      ./test-pipeline.sh [OPTIONS] (stages.ops.pipeline_check)
    stages query SQL            python -m stages.query SQL   (also the stages-query command)
    stages history [OPTIONS]    python -m stages.orchestrator history [OPTIONS]

Each subcommand takes the same options and environment, and exits with the same status, as the
script it stands for. ``./start.sh`` also creates the venv first; ``stages`` is already in one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

PROG = "stages"


def _fleet(command: str) -> Callable[[list[str]], int]:
    def run(args: list[str]) -> int:
        from stages.ops import fleet

        return fleet.main([command, *args], prog=PROG)

    return run


def _provision(args: list[str]) -> int:
    argparse.ArgumentParser(
        prog=f"{PROG} provision",
        description="Create the streams, buckets and lease tables the settings name (idempotent).",
    ).parse_args(args)
    from stages.ops import provision

    return provision.main()


def _check(args: list[str]) -> int:
    from stages.ops import pipeline_check

    return pipeline_check.main(args, prog=f"{PROG} check")


def _query(args: list[str]) -> int:
    from stages.query import main as query

    return query.main(args, prog=f"{PROG} query")


def _history(args: list[str]) -> int:
    from stages.orchestrator import history_cli

    return history_cli.main(args, prog=f"{PROG} history")


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "start": (_fleet("start"), "start services (default: every built one) and wait until healthy"),
    "stop": (_fleet("stop"), "stop services started from this RUN_DIR (default: all)"),
    "status": (_fleet("status"), "table of services: pid, port, health (exit 3: not all up)"),
    "provision": (_provision, "create the streams, buckets and lease table (idempotent)"),
    "check": (_check, "end-to-end check of the running pipeline (./test-pipeline.sh)"),
    "query": (_query, "DuckDB SQL over the curated lake's Iceberg tables (telemetry.logs, ...)"),
    "history": (_history, "generate labelled history for a past range and wait for it"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the local, AWS-shaped telemetry pipeline.",
        epilog=f"'{PROG} COMMAND --help' shows a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, helptext) in COMMANDS.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        # No command, --help, or an unknown one: argparse prints the usage (and exits 2 on error).
        _parser().parse_args(args)
        return 2
    run, _ = COMMANDS[args[0]]
    return run(args[1:])


if __name__ == "__main__":
    sys.exit(main())

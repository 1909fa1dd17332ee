"""``python -m stages.orchestrator history``: start a history run on a running orchestrator and
wait for it, printing its progress; exit 0 when every record was accepted, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx

from stages.common.config import get_settings

TERMINAL = ("completed", "failed", "stopped")


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Generate labelled history for a past range through the running pipeline "
        "(POST /api/history on the orchestrator) and wait until it is done.",
    )
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--days", type=float, help="the last DAYS days up to now")
    when.add_argument("--start", help="range start, RFC 3339 (with --end)")
    p.add_argument("--end", help="range end, RFC 3339, not after now")
    p.add_argument("--resolution", type=float, default=10, help="seconds per step (10)")
    p.add_argument("--services", help="comma-separated services (default: all)")
    p.add_argument("--metrics", help="comma-separated metric names (default: all)")
    p.add_argument("--seed", type=int, help="seed (default: drawn and printed)")
    p.add_argument("--rate-per-day", type=float, help="anomaly windows per simulated day")
    p.add_argument(
        "--logs-apm-per-step", type=int, default=2, help="logs and spans per service per step (2)"
    )
    p.add_argument("--url", help="orchestrator URL (default: from ORCHESTRATOR_HOST/PORT)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between progress lines")
    p.add_argument("--no-wait", action="store_true", help="print the run's id and return")
    return p


def body_of(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resolution_seconds": args.resolution,
        "logs_apm_per_step": args.logs_apm_per_step,
    }
    if args.days is not None:
        body["days"] = args.days
    else:
        body["start"], body["end"] = args.start, args.end
    if args.services:
        body["services"] = [s.strip() for s in args.services.split(",") if s.strip()]
    if args.metrics:
        body["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.seed is not None:
        body["seed"] = args.seed
    if args.rate_per_day is not None:
        body["anomalies"] = {"rate_per_day": args.rate_per_day}
    return body


def line(run: dict[str, Any]) -> str:
    return (
        f"{run['status']:9} chunks {run['chunks_done']}/{run['chunks_total']}  "
        f"records {run['records_accepted']}/{run['records_planned']} accepted, "
        f"{run['records_failed']} failed  windows {len(run['windows'])}/{run['windows_planned']}  "
        f"{run['records_per_second']:.0f} records/s, "
        f"{run['simulated_days_per_minute']:.3f} simulated days/min  "
        f"up to {run['generated_until'] or '-'}"
    )


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m stages.orchestrator history"
) -> int:
    args = parser(prog).parse_args(argv)
    if args.start is not None and args.end is None:
        parser(prog).error("--start needs --end")
    settings = get_settings()
    url = args.url or f"http://{settings.orchestrator_host}:{settings.orchestrator_port}"
    headers = (
        {"Authorization": f"Bearer {settings.control_token}"} if settings.control_token else {}
    )
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        try:
            resp = client.post("/api/history", json=body_of(args))
        except httpx.HTTPError as exc:
            print(f"cannot reach the orchestrator at {url}: {exc}", file=sys.stderr)
            return 2
        if resp.status_code != 202:
            print(f"refused ({resp.status_code}): {resp.text}", file=sys.stderr)
            return 2
        run = resp.json()
        print(f"history {run['id']}: {run['start']} .. {run['end']}, seed {run['seed']}")
        if args.no_wait:
            return 0
        try:
            while run["status"] not in TERMINAL:
                print(line(run), flush=True)
                time.sleep(args.poll)
                run = client.get(f"/api/history/{run['id']}").json()
        except KeyboardInterrupt:
            run = client.post(f"/api/history/{run['id']}/stop").json()
        print(line(run))
        for error in run["errors"]:
            print(f"error: {error}", file=sys.stderr)
    return 0 if run["status"] == "completed" else 1

"""Records per second of one synthesis process: ``python -m benchmarks.synthesis_rate``.

Generation alone (in this process) and, with ``--url``, through a running service's HTTP API
(generation plus JSON). Prints the median of several requests of ``--count`` records each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import httpx

from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import SynthesizeRequest

MIXES: dict[str, dict[str, object]] = {
    "mixed 70/20/10": {},
    "logs": {"kinds": ["log"]},
    "metrics": {"kinds": ["metric"]},
    "apm": {"kinds": ["apm"]},
    "cpu_spike anomaly": {
        "anomaly": {
            "anomaly_type": "cpu_spike",
            "scenario_id": "bench",
            "intensity": 90,
            "window_start": "2026-01-01T00:00:00Z",
            "window_end": "2026-01-01T00:10:00Z",
        },
        "timestamp": "2026-01-01T00:05:00Z",
        "anomalous_share": 0.5,
    },
}


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: imports, caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--url", help="a running synthesis service, e.g. http://127.0.0.1:8002")
    args = parser.parse_args()
    pool = EntityPool()
    client = httpx.Client(base_url=args.url, timeout=60) if args.url else None
    for name, extra in MIXES.items():
        body = {"count": args.count, "seed": 1, **extra}
        request = SynthesizeRequest.model_validate(body)
        local = median_seconds(lambda r=request: synthesize(r, pool), args.repeats)
        line = f"{name:<18} in-process {args.count / local:>9,.0f} records/s"
        if client is not None:
            remote = median_seconds(
                lambda b=body: client.post("/api/synthesize", json=b).raise_for_status(),
                args.repeats,
            )
            line += f"   over HTTP {args.count / remote:>9,.0f} records/s"
        print(line)


if __name__ == "__main__":
    main()

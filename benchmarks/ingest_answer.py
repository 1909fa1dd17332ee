"""What the Ingestion Interface's per-record answer costs next to validating the same batch.

    .venv/bin/python -m benchmarks.ingest_answer

For batches of 500 and 5,000 canonical records (logs, metrics and spans in turn): the time to
validate them, the time to build and serialise the answer (one result per record), and its size.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from stages.common.validation import validate_records
from stages.ingestion.fanout import IngestResult, _results


def _record(i: int) -> dict[str, Any]:
    base = {"event_id": f"evt-{i:012d}", "timestamp": "2025-11-09T13:24:33.120Z"}
    if i % 3 == 0:
        return base | {
            "kind": "log",
            "service": "api-gateway",
            "level": "INFO",
            "message": f"Request processed {i}",
            "log_type": "api_gateway_log",
            "category": "application",
        }
    if i % 3 == 1:
        return base | {
            "kind": "metric",
            "service": "payment-service",
            "metric_name": "cpu_percent",
            "value": 41.5,
            "unit": "percent",
        }
    return base | {
        "kind": "apm",
        "service": "account-service",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "name": "GET /accounts",
        "duration_ms": 12.5,
        "status": "OK",
    }


def _seconds(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    for count in (500, 5_000):
        raw = [_record(i) for i in range(count)]
        validated = validate_records(raw)
        assert not validated.rejected, validated.rejected[0]

        def answer(validated: Any = validated, raw: list[Any] = raw) -> bytes:
            results = _results(raw, validated.dicts, validated.rejected, set(), "")
            return orjson.dumps(IngestResult(len(raw), 0, results=results).to_dict())

        validate_s = _seconds(lambda raw=raw: validate_records(raw), 20)
        answer_s = _seconds(answer, 20)
        size = len(answer())
        print(
            f"{count:>5} records: validation {validate_s * 1e3:7.2f} ms, answer "
            f"{answer_s * 1e3:6.2f} ms ({answer_s / count * 1e6:.2f} µs/record, "
            f"{answer_s / validate_s:.1%} of validation), {size:,} bytes "
            f"({size / count:.0f} per record)"
        )


if __name__ == "__main__":
    main()

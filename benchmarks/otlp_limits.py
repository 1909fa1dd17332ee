"""What the OTLP receiver's request limits cost and save (``stages/consolidation/otlp.py``).

    .venv/bin/python -m benchmarks.otlp_limits bomb     # 5 million empty records (10 MB)
    .venv/bin/python -m benchmarks.otlp_limits legit    # 5,000 records x 20 attributes

``bomb`` decodes the request as the receiver does and prints how it ended, the time and the
process's peak RSS (run it in a fresh process: peak RSS only grows). ``legit`` prints the time of
the wire count, of the protobuf parse, and of decoding plus screening (what the receiver does
before storing), best of five.
"""

from __future__ import annotations

import argparse
import resource
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from stages.consolidation import otlp

PROTOBUF = "application/x-protobuf"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (the tests build their hostile bodies with it)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def bomb() -> None:
    body = length_delimited(1, length_delimited(2, b"\x12\x00" * 5_000_000))
    started = time.perf_counter()
    try:
        otlp.screen(otlp.decode_request(body, PROTOBUF))
        outcome = "accepted"
    except otlp.OtlpError as exc:
        outcome = f"{exc.http_status} {exc.message}"
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(body) / 1e6:.1f} MB, 5,000,000 empty records: {outcome}")
    print(f"{elapsed:.2f} s, peak RSS {peak:.0f} MiB")


def _best(fn: object, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def legit() -> None:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for i in range(5000):
        record = scope.log_records.add(
            time_unix_nano=1, severity_number=9, body=AnyValue(string_value=f"GET /u/{i} 200")
        )
        record.attributes.extend(
            KeyValue(key=f"attr.{j}", value=AnyValue(string_value="value")) for j in range(20)
        )
    body = request.SerializeToString()
    count = _best(lambda: otlp._count_message(body))
    parse = _best(lambda: ExportLogsServiceRequest().ParseFromString(body))
    total = _best(lambda: otlp.screen(otlp.decode_request(body, PROTOBUF)))
    print(
        f"5,000 records x 20 attributes ({len(body) / 1e6:.2f} MB): wire count {count:.0f} ms, "
        f"parse {parse:.0f} ms, decode + screen {total:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.otlp_limits")
    parser.add_argument("what", choices=["bomb", "legit"])
    args = parser.parse_args()
    bomb() if args.what == "bomb" else legit()


if __name__ == "__main__":
    main()

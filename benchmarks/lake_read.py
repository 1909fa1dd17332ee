"""Reading lake objects in pieces against reading them whole: time and lines of both.

Usage: .venv/bin/python -m benchmarks.lake_read

An in-memory object of 40,000 canonical-sized lines (about 10.7 MB), plain and gzip, read by
``stages.common.lake.read_lines`` and by a whole-body read, decompress and split; best of 5.
"""

from __future__ import annotations

import gzip
import io
import time
from typing import Any

import orjson

from stages.common import lake

LINES = 40_000
ROUNDS = 5


class MemoryS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[Key])}


def main() -> None:
    lines = [
        orjson.dumps(
            {
                "event_id": f"{i:032x}",
                "timestamp": "2026-11-27T06:00:00.000Z",
                "service": "api-gateway",
                "message": "request processed " * 8,
            }
        )
        for i in range(LINES)
    ]
    body = b"\n".join(lines) + b"\n"
    s3 = MemoryS3({"p.jsonl": body, "g.jsonl.gz": gzip.compress(body, mtime=0)})
    for key in ("p.jsonl", "g.jsonl.gz"):
        whole = pieces = float("inf")
        for _ in range(ROUNDS):
            start = time.perf_counter()
            raw = s3.get_object(Bucket="b", Key=key)["Body"].read()
            expected = (gzip.decompress(raw) if lake.is_gzip(key) else raw).splitlines()
            whole = min(whole, time.perf_counter() - start)
            start = time.perf_counter()
            got = lake.read_lines(s3, "b", key).require_complete().lines
            pieces = min(pieces, time.perf_counter() - start)
            if got != expected:
                raise SystemExit(f"{key}: read_lines gave other lines than a whole-body read")
        print(
            f"{key}: {len(body) / 1e6:.1f} MB, {LINES} lines: whole body {whole * 1000:.1f} ms, "
            f"read_lines {pieces * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()

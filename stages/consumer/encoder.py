"""JSONL object bodies, optionally gzipped. One JSON object per line; every file ends with \\n."""

from __future__ import annotations

import gzip
from collections.abc import Sequence

# Level 6 is gzip's default trade-off; the lake is write-once, read-many.
_GZIP_LEVEL = 6


def encode_lines(lines: Sequence[bytes], compression: str) -> bytes:
    body = b"\n".join(lines) + b"\n"
    if compression == "gzip":
        # mtime=0 keeps the bytes of a rewritten object identical to the first write.
        return gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
    return body

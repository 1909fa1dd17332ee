"""GETs of raw objects and PUTs of the fold's data files, through obstore (Rust's
``object_store``).

A fold reads one object per second of every (stream, service) partition, a few dozen records
each, so the cost of one GET decides the fold's CPU per record. Measured on the emulator
(docs/performance.md, "One fold of the ETL service"): boto3 spends about 1.5 ms of CPU per GET
of a 22 KB object, obstore about 0.45 ms, with the same concurrency; a data file's PUT through
pyarrow's S3 filesystem about 2.5 ms, through obstore about 0.7 ms. The reads and the data files'
PUTs go through obstore; listing and every other call stay on boto3.

``read_plain`` reads a plain object whole in one GET (the fold's common case: the consumer writes
plain JSONL). ``RawReader`` also has the one method of a boto3 S3 client that
``stages.common.lake.read_lines`` uses, ``get_object(Bucket=, Key=)["Body"]`` with
``read``/``close``, so a gzip object is read by the lake's capped, piecewise reading (gzip bombs
stop at the limit), the same code for both clients.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import obstore
from obstore.store import S3Store

from stages.common.aws import EMULATOR_KEYS, emulator_keys_needed, region
from stages.common.config import Settings
from stages.common.errors import Unprocessable
from stages.common.lake import DEFAULT_MAX_INFLATED, PIECE_BYTES
from stages.common.objectstore import open_s3_store


class _Body:
    """A streamed object body read in pieces, like botocore's ``StreamingBody``."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += bytes(chunk)
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def close(self) -> None:
        self._buffer = b""


class RawReader:
    """Reads objects of the raw buckets; one obstore client per bucket, made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stores: dict[str, S3Store] = {}
        self._lock = threading.Lock()
        # Whether the emulator's default keys are used, decided on the first store: with no
        # credentials found, boto3 walks its whole chain (the instance metadata service too) on
        # every ask, which would cost each bucket's first GET or PUT a second round of it.
        self._default_keys: bool | None = None

    def store(self, bucket: str) -> S3Store:
        with self._lock:
            if bucket not in self._stores:
                self._stores[bucket] = self._open(bucket)
            return self._stores[bucket]

    def _open(self, bucket: str) -> S3Store:
        endpoint = self.settings.aws_endpoint_url
        if self._default_keys is None:
            self._default_keys = emulator_keys_needed(endpoint)
        keys = EMULATOR_KEYS if self._default_keys else None
        return open_s3_store(bucket, endpoint=endpoint, region=region(self.settings), keys=keys)

    def put(self, url: str, data: Any) -> None:
        """Upload ``data`` (bytes or a buffer) to ``s3://bucket/key`` in one request."""
        parsed = urlparse(url)
        if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
            raise ValueError(f"not an s3:// location: {url}")
        # obstore takes a 1-D buffer of unsigned bytes; an Arrow buffer exports signed ones.
        body = memoryview(data).cast("B")
        obstore.put(self.store(parsed.netloc), parsed.path.lstrip("/"), body, use_multipart=False)

    def read_plain(self, bucket: str, key: str, *, max_bytes: int = DEFAULT_MAX_INFLATED) -> bytes:
        """A plain (not gzip) object's body in one GET, refused above ``max_bytes`` as
        ``lake.read_lines`` refuses it."""
        result = obstore.get(self.store(bucket), key)
        size = int(result.meta["size"])
        if size > max_bytes:
            raise Unprocessable(
                f"object {key!r} holds more than {max_bytes} bytes of lines, "
                "more than this reader may read"
            )
        return bytes(result.bytes())

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        result = obstore.get(self.store(Bucket), Key)
        return {"Body": _Body(iter(result.stream(min_chunk_size=PIECE_BYTES)))}

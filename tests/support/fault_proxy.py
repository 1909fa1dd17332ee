"""A fault-injecting reverse proxy between a real client process and the real emulator.

moto never throttles and never fails, so the fault tests put this proxy in front of it: the
client under test gets ``proxy.url`` as its ``AWS_ENDPOINT_URL`` and every request is forwarded
verbatim (headers too, except the hop-by-hop ones and ``Host``/``Content-Length``, which are
recomputed) unless a fault is due. Faults, chosen with a seeded RNG so runs are repeatable:

=========================  =====================================================================
``putrecords_partial``     Kinesis PutRecords: each entry fails with this probability as
                           ``ProvisionedThroughputExceededException`` in an HTTP 200 answer. The
                           failed entries are *removed* from the request before it is forwarded,
                           so they are really not written (as with real throttling); the upstream
                           answer for the rest is merged back in the original order.
``putrecords_throttle``    Kinesis PutRecords: the whole call is answered 400
                           ``ProvisionedThroughputExceededException`` and not forwarded.
``getrecords_throttle``    Kinesis GetRecords: 400 ``ProvisionedThroughputExceededException``.
``getrecords_expired``     Kinesis GetRecords: 400 ``ExpiredIteratorException``.
``s3_put_error``           S3 PUT of an object (path style ``/bucket/key``): 500 ``InternalError``
                           or 503 ``SlowDown`` (see ``s3_error_statuses``) with an S3 XML body.
=========================  =====================================================================

``configure(name=rate)`` sets a probability (0..1; for ``putrecords_partial`` per entry, for the
others per request); ``inject_next(name, n)`` forces the fault on the next ``n`` matching
requests (for ``putrecords_partial``: every entry of those calls fails); ``clear()`` switches
everything off. ``configure(delay=seconds)`` adds latency before every forwarded request.
``injected`` counts what was injected (``putrecords_partial_calls``,
``putrecords_partial_entries``, ``putrecords_throttle``, ``getrecords_throttle``,
``getrecords_expired``, ``s3_put_error``, ``s3_put_error_500``/``_503``); ``received`` and
``forwarded`` count requests by operation (``kinesis:PutRecords``, ``s3:PUT``, ...);
``putrecords_calls`` records the size of every PutRecords request as the client sent it.

The proxy forwards any HTTP service, not only AWS: ``observer(method, path, body, status,
answer)`` is called with every request, the status its client got (502 when the upstream was
down, 0 when the client was gone before the answer was written) and the answer's body, which
is how the fault suite sees which records the Ingestion Interface accepted.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

FAULTS = (
    "putrecords_partial",
    "putrecords_throttle",
    "getrecords_throttle",
    "getrecords_expired",
    "s3_put_error",
)

# Never forwarded as received: hop-by-hop headers (RFC 9110 7.6.1) and the ones we recompute.
_DROP_REQUEST_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",  # the proxy already answered 100-continue and sends the whole body
    }
)
_DROP_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "date",
        "server",
    }
)
_KINESIS_JSON = "application/x-amz-json-1.1"
_STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)


@dataclass(frozen=True)
class PutRecordsCall:
    """One PutRecords request as the client sent it (before any fault)."""

    stream: str
    entries: int
    payload_bytes: int  # decoded data plus partition keys: what Kinesis' 5 MiB limit counts
    max_entry_bytes: int
    body_bytes: int


@dataclass
class _Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


def _b64_decoded_len(text: str) -> int:
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return len(text) * 3 // 4 - padding


def _json_error(error_type: str, message: str) -> _Response:
    body = json.dumps({"__type": error_type, "message": message}).encode()
    return _Response(
        400,
        "Bad Request",
        [
            ("Content-Type", _KINESIS_JSON),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("x-amzn-ErrorType", error_type),
        ],
        body,
    )


def _s3_error(status: int, resource: str) -> _Response:
    code, message, reason = {
        500: (
            "InternalError",
            "We encountered an internal error. Please try again.",
            "Internal Server Error",
        ),
        503: ("SlowDown", "Please reduce your request rate.", "Service Unavailable"),
    }[status]
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    return _Response(
        status,
        reason,
        [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)],
        body,
    )


class FaultProxy:
    """See the module docstring. Use as a context manager or call ``start()``/``stop()``."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        observer: Callable[[str, str, bytes, int, bytes], None] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rates: dict[str, float] = dict.fromkeys(FAULTS, 0.0)
        self._forced: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.delay = 0.0
        self.s3_error_statuses: tuple[int, ...] = (500, 503)
        self.injected: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.putrecords_calls: deque[PutRecordsCall] = deque(maxlen=100_000)
        self.observer = observer
        # A fixed port lets a test take the proxy away and bring it back at the same address.
        self._server = _Server((host, port), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"fault-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()
        self._server.close_connections()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- fault control --------------------------------------------------------------------------
    def configure(self, **settings: Any) -> None:
        """Set fault probabilities (``putrecords_partial=0.3``...), ``delay`` (seconds) or
        ``s3_error_statuses`` (a tuple of 500 and/or 503). Unnamed faults keep their values."""
        with self._lock:
            for name, value in settings.items():
                if name in self._rates:
                    if not 0.0 <= float(value) <= 1.0:
                        raise ValueError(f"{name} must be a probability, not {value!r}")
                    self._rates[name] = float(value)
                elif name == "delay":
                    self.delay = float(value)
                elif name == "s3_error_statuses":
                    statuses = tuple(value)
                    if not statuses or not set(statuses) <= {500, 503}:
                        raise ValueError("s3_error_statuses must contain 500 and/or 503")
                    self.s3_error_statuses = statuses
                else:
                    raise ValueError(f"unknown fault setting {name!r}; known: {FAULTS}")

    def inject_next(self, fault: str, count: int = 1) -> None:
        """Force ``fault`` on the next ``count`` matching requests."""
        if fault not in self._forced:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        with self._lock:
            self._forced[fault] += count

    def clear(self) -> None:
        """Switch every fault (rates, forced counts, delay) off; counters are kept."""
        with self._lock:
            self._rates = dict.fromkeys(FAULTS, 0.0)
            self._forced = dict.fromkeys(FAULTS, 0)
            self.delay = 0.0

    def _due(self, fault: str) -> bool:
        """Whether ``fault`` hits this request (called with the lock held)."""
        if self._forced[fault] > 0:
            self._forced[fault] -= 1
            return True
        rate = self._rates[fault]
        return rate > 0 and self._rng.random() < rate

    # --- request handling (handler threads) -----------------------------------------------------
    def _handle(self, handler: _Handler, body: bytes) -> _Response:
        method = handler.command
        target = handler.headers.get("X-Amz-Target", "")
        operation = self._operation(method, target)
        with self._lock:
            self.received[operation] += 1
            delay = self.delay
        if target == "Kinesis_20131202.PutRecords":
            return self._put_records(handler, body, delay)
        if target == "Kinesis_20131202.GetRecords":
            with self._lock:
                if self._due("getrecords_throttle"):
                    self.injected["getrecords_throttle"] += 1
                    return _json_error(
                        "ProvisionedThroughputExceededException",
                        "Rate exceeded for Shard (injected by the fault proxy)",
                    )
                if self._due("getrecords_expired"):
                    self.injected["getrecords_expired"] += 1
                    return _json_error(
                        "ExpiredIteratorException",
                        "Iterator expired. The iterator was created more than 300000 "
                        "milliseconds ago (injected by the fault proxy)",
                    )
        elif not target and method == "PUT" and self._is_s3_object(handler.path):
            with self._lock:
                if self._due("s3_put_error"):
                    status = self._rng.choice(self.s3_error_statuses)
                    self.injected["s3_put_error"] += 1
                    self.injected[f"s3_put_error_{status}"] += 1
                    return _s3_error(status, urlsplit(handler.path).path)
        return self._forward(handler, body, operation, delay)

    @staticmethod
    def _operation(method: str, target: str) -> str:
        if target:
            service, _, action = target.partition(".")
            return f"{service.split('_')[0].lower()}:{action}"
        return f"s3:{method}"

    @staticmethod
    def _is_s3_object(path: str) -> bool:
        bucket, _, key = urlsplit(path).path.lstrip("/").partition("/")
        return bool(bucket and key)

    def _put_records(self, handler: _Handler, body: bytes, delay: float) -> _Response:
        try:
            request = json.loads(body)
            records = request["Records"]
        except (ValueError, KeyError, TypeError):
            return self._forward(handler, body, "kinesis:PutRecords", delay)
        sizes = [
            _b64_decoded_len(r.get("Data", "")) + len(r.get("PartitionKey", "").encode())
            for r in records
        ]
        call = PutRecordsCall(
            stream=str(request.get("StreamName") or request.get("StreamARN") or ""),
            entries=len(records),
            payload_bytes=sum(sizes),
            max_entry_bytes=max(sizes, default=0),
            body_bytes=len(body),
        )
        with self._lock:
            self.putrecords_calls.append(call)
            if self._due("putrecords_throttle"):
                self.injected["putrecords_throttle"] += 1
                return _json_error(
                    "ProvisionedThroughputExceededException",
                    f"Rate exceeded for stream {call.stream} (injected by the fault proxy)",
                )
            if self._forced["putrecords_partial"] > 0:
                self._forced["putrecords_partial"] -= 1
                failed = set(range(len(records)))
            else:
                rate = self._rates["putrecords_partial"]
                failed = (
                    {i for i in range(len(records)) if self._rng.random() < rate}
                    if rate > 0
                    else set()
                )
        if not failed:
            return self._forward(handler, body, "kinesis:PutRecords", delay)

        kept = [r for i, r in enumerate(records) if i not in failed]
        upstream_results: list[dict[str, Any]] = []
        upstream_failed = 0
        headers: list[tuple[str, str]] = [("Content-Type", _KINESIS_JSON)]
        if kept:
            response = self._forward(
                handler,
                json.dumps({**request, "Records": kept}).encode(),
                "kinesis:PutRecords",
                delay,
            )
            if response.status != 200:
                return response  # nothing injected: the client sees the real error
            answer = json.loads(response.body)
            upstream_results = answer["Records"]
            upstream_failed = int(answer.get("FailedRecordCount", 0))
            # The body changes, so its checksum header would be wrong.
            headers = [(k, v) for k, v in response.headers if k.lower() != "x-amz-crc32"]
        with self._lock:
            self.injected["putrecords_partial_calls"] += 1
            self.injected["putrecords_partial_entries"] += len(failed)
        upstream_iter = iter(upstream_results)
        merged = [
            {
                "ErrorCode": "ProvisionedThroughputExceededException",
                "ErrorMessage": f"Rate exceeded for shard in stream {call.stream} "
                "(injected by the fault proxy)",
            }
            if i in failed
            else next(upstream_iter)
            for i in range(len(records))
        ]
        payload = json.dumps(
            {"FailedRecordCount": upstream_failed + len(failed), "Records": merged}
        ).encode()
        return _Response(200, "OK", headers, payload)

    def _forward(self, handler: _Handler, body: bytes, operation: str, delay: float) -> _Response:
        if delay > 0:
            time.sleep(delay)
        headers = [
            (k, v) for k, v in handler.headers.items() if k.lower() not in _DROP_REQUEST_HEADERS
        ]
        method = handler.command
        for attempt in (1, 2):
            conn, reused = handler.upstream(self.upstream_host, self.upstream_port)
            try:
                conn.putrequest(method, handler.path, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if body or method in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
                upstream = conn.getresponse()
                data = upstream.read()
            except _STALE_CONNECTION_ERRORS:
                handler.drop_upstream()
                # A kept-alive connection the emulator closed meanwhile: the request did not
                # get through, so sending it once more on a fresh connection is safe.
                if reused and attempt == 1:
                    continue
                return self._bad_gateway()
            except OSError:
                handler.drop_upstream()
                return self._bad_gateway()
            if upstream.will_close:
                handler.drop_upstream()
            with self._lock:
                self.forwarded[operation] += 1
            drop = _DROP_RESPONSE_HEADERS
            if method == "HEAD":
                drop = drop - {"content-length"}  # the object's size, not this (empty) body's
            response_headers = [(k, v) for k, v in upstream.getheaders() if k.lower() not in drop]
            return _Response(upstream.status, upstream.reason, response_headers, data)
        return self._bad_gateway()

    @staticmethod
    def _bad_gateway() -> _Response:
        return _Response(502, "Bad Gateway", [("Content-Type", "text/plain")], b"upstream failed")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    proxy: FaultProxy

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Unblock handler threads parked on idle kept-alive client connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the client
    timeout = 300
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)
        self._upstream: http.client.HTTPConnection | None = None
        self._upstream_used = False

    def finish(self) -> None:
        self.drop_upstream()
        self.server.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def upstream(self, host: str, port: int) -> tuple[http.client.HTTPConnection, bool]:
        """This client connection's kept-alive upstream connection, and whether it was used."""
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection(host, port, timeout=120)
            self._upstream_used = False
        reused = self._upstream_used
        self._upstream_used = True
        return self._upstream, reused

    def drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the test output

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers are dropped with the chunked framing
                    return b"".join(chunks)
                chunks.append(self._read_exactly(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self._read_exactly(length) if length else b""

    def _read_exactly(self, size: int) -> bytes:
        # A client killed mid-upload leaves a short body: forwarding it would store a cut
        # object (a real proxy, like a real S3, drops the request with the connection).
        data = self.rfile.read(size)
        if len(data) < size:
            raise ConnectionAbortedError(f"the client sent {len(data)} of {size} body bytes")
        return data

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        proxy = self.server.proxy
        response = proxy._handle(self, body)
        delivered = response.status
        try:
            self._respond(response)
        except OSError:
            # The client went away (it timed out, or was killed) before it got the answer.
            delivered = 0
            self.close_connection = True
        finally:
            if proxy.observer is not None:
                proxy.observer(self.command, self.path, body, delivered, response.body)

    def _respond(self, response: _Response) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in response.headers:
            self.send_header(name, value)
        no_body = self.command == "HEAD" or response.status in (204, 304)
        if not no_body:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not no_body:
            self.wfile.write(response.body)
        self.wfile.flush()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _serve

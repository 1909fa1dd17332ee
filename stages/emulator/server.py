"""The embedded AWS emulator: a moto server that also answers LocalStack's health endpoint.

``python -m stages.emulator`` binds 127.0.0.1:4566 by default, serves Kinesis, S3 and DynamoDB
(and every other service moto knows), and creates the resource catalogue once it listens, so the
verification commands users know from LocalStack work unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cheroot.wsgi import Server as WSGIServer
from moto.moto_server import werkzeug_app
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from stages.common.hosts import WILDCARD_BINDS, HostPolicy, configured_names, parse_list
from stages.common.logging_setup import configure_logging
from stages.common.runtime import tune_process
from stages.emulator import moto_patches

log = logging.getLogger(__name__)

HEALTH_PATHS = ("/_localstack/health", "/health")
EMULATED_SERVICES = ("kinesis", "s3", "dynamodb", "sqs")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class HealthMiddleware:
    """Answers the health paths itself and hands every other request to moto."""

    def __init__(self, app: WSGIApp, ready: threading.Event) -> None:
        self.app = app
        self.ready = ready

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if environ.get("PATH_INFO") in HEALTH_PATHS and environ.get("REQUEST_METHOD") == "GET":
            state = "running" if self.ready.is_set() else "starting"
            body = json.dumps(
                {
                    "services": dict.fromkeys(EMULATED_SERVICES, state),
                    "edition": "moto",
                    "status": "healthy" if self.ready.is_set() else "starting",
                }
            ).encode()
            status = "200 OK" if self.ready.is_set() else "503 Service Unavailable"
            start_response(
                status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        return self.app(environ, start_response)


class HostGuard:
    """Answers 400 to a ``Host`` outside the allow-list (a DNS-rebinding page could otherwise
    read and write every bucket and stream) and 403 to a write from a foreign ``Origin``.

    Subdomains of allowed names pass (S3 virtual-hosted buckets such as ``bucket.localhost``),
    and so does LocalStack's public loopback name ``localhost.localstack.cloud`` (its DNS answers
    127.0.0.1 and nobody else controls it)."""

    def __init__(self, app: WSGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        host = environ.get("HTTP_HOST")
        if not self.policy.allows_host(host):
            return _refuse(
                start_response,
                "400 Bad Request",
                "host_not_allowed",
                f"Host {str(host)[:100]!r} is not a name the emulator answers to "
                "(localhost, 127.0.0.1, [::1], the compose service names, ALLOWED_HOSTS)",
            )
        origin = environ.get("HTTP_ORIGIN")
        # AWS SDKs send no Origin; a browser does, on every fetch from a page. A foreign page is
        # refused whatever the method: a cross-site form can POST without a preflight (S3's
        # POST-object upload, the query protocol of the other services), and a GET would let it
        # read every bucket if anything answered with CORS headers.
        if origin is not None and not self.policy.allows_origin(origin, host):
            return _refuse(
                start_response,
                "403 Forbidden",
                "forbidden",
                f"requests from origin {origin[:100]!r} are not answered here",
            )
        return self.app(environ, start_response)


def _refuse(
    start_response: Callable[..., Any], status: str, error: str, message: str
) -> list[bytes]:
    body = json.dumps({"error": error, "message": message}).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


# Names LocalStack users point their clients at; public DNS resolves them to 127.0.0.1.
LOCALSTACK_HOSTS = ("localhost.localstack.cloud",)


def emulator_host_policy(
    allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()
) -> HostPolicy:
    return HostPolicy.build([*LOCALSTACK_HOSTS, *allowed_hosts], allowed_origins, subdomains=True)


# moto's own server is werkzeug's development server: "Connection: close" on every response and
# a new thread per connection, so each AWS call paid for a TCP connection and a thread on both
# sides (a visible share of the Ingestion Interface's CPU went to connecting). cheroot keeps
# HTTP/1.1 connections alive and serves them from a pool of threads.
SERVER_THREADS = 32
# Seconds an idle kept-alive connection stays open; botocore reuses pooled ones sooner.
KEEP_ALIVE_SECONDS = 60
# Connections kept alive at once. cheroot's default, 10, answers "Connection: close" as soon as
# ten are open: with the producer, the consumer's shards, the ETL's readers and the dashboard
# connected, most calls then paid for a new TCP connection on both sides. Idle ones still close
# after KEEP_ALIVE_SECONDS; the bound stays well under the process' file descriptor limit.
KEEP_ALIVE_CONNECTIONS = 256


def backend_app_without_debug(service: Any) -> Any:
    """moto's Flask app for ``service``, out of debug mode.

    moto turns Flask's debug mode on; Flask then gives every request a class of its own (a
    debugging aid for form errors) that refers back to the request, so each request and its body
    lived in a reference cycle until a full garbage collection.
    """
    app = create_backend_app(service)
    app.debug = False
    return app


# moto wraps every backend in flask-cors with its defaults (any origin may read any answer);
# our clients are SDKs and server-side services, so no answer carries CORS headers.
werkzeug_app.DISABLE_GLOBAL_CORS = True


def serve(
    host: str,
    port: int,
    *,
    provision: bool,
    s3_memory_object_bytes: int,
    data_directory: Path | None = None,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
) -> None:
    moto_patches.apply(s3_memory_object_bytes, data_directory)
    ready = threading.Event()
    app = HostGuard(
        HealthMiddleware(DomainDispatcherApplication(backend_app_without_debug), ready),
        emulator_host_policy(allowed_hosts, allowed_origins),
    )
    server = WSGIServer(
        (host, port),
        app,
        numthreads=SERVER_THREADS,
        timeout=KEEP_ALIVE_SECONDS,
        request_queue_size=1024,
        server_name="moto",
    )
    server.keep_alive_conn_limit = KEEP_ALIVE_CONNECTIONS
    server.prepare()
    bound_port = server.bind_addr[1]
    log.info("emulator listening on http://%s:%s", host or "0.0.0.0", bound_port)
    # Provisioning calls this process over HTTP: a wildcard bind is reached on loopback, since
    # the emulator answers only Host names it knows, and a wildcard address is none of them.
    reach = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
    endpoint = f"http://{reach}:{bound_port}"

    def shutdown(*_: Any) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)

    def provision_then_ready() -> None:
        if provision:
            from stages.common.config import Settings
            from stages.common.resource_setup import ensure_resources

            try:
                ensure_resources(Settings(aws_endpoint_url=endpoint))
            except Exception:
                log.exception("creating resources failed")
                os._exit(1)
        ready.set()
        from stages.common.config import get_settings

        # Machine-readable for whoever started us with port 0; under LOG_FORMAT=json every line
        # of the output is a JSON object, this one too.
        if get_settings().log_format == "json":
            log.info("EMULATOR READY %s", endpoint, extra={"endpoint": endpoint})
        else:
            print(f"EMULATOR READY {endpoint}", flush=True)

    threading.Thread(target=provision_then_ready, daemon=True).start()
    server.serve()


def main(argv: list[str] | None = None) -> None:
    from stages.common.config import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m stages.emulator", description=__doc__)
    parser.add_argument("--host", default=settings.emulator_host)
    parser.add_argument("--port", type=int, default=settings.emulator_port)
    parser.add_argument(
        "--no-provision", action="store_true", help="do not create the resource catalogue"
    )
    args = parser.parse_args(argv)
    configure_logging(settings)
    tune_process(settings.memory_reclaim_seconds)
    serve(
        args.host,
        args.port,
        provision=not args.no_provision,
        s3_memory_object_bytes=settings.emulator_s3_memory_object_bytes,
        data_directory=settings.data_dir / "emulator",
        allowed_hosts=[*configured_names(settings), *{args.host} - WILDCARD_BINDS],
        allowed_origins=parse_list(settings.allowed_origins),
    )
    sys.exit(0)

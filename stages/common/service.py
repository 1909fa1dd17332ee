"""Plumbing every HTTP service shares: /health, Prometheus /metrics, /docs, error handling,
the control token, a small status page at /, logging, and serving.

A service supplies its routers, a ``health`` callable and (optionally) a ``status`` callable
with the counters its status page shows; this module turns that into a FastAPI app, so health,
metrics, errors and the status page look the same on every port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

import stages
from stages.common.config import Settings, get_settings
from stages.common.errors import (
    ErrorBody,
    Forbidden,
    HostNotAllowed,
    PayloadTooLarge,
    StagesError,
    Unauthorized,
    UnsupportedMediaType,
    error_body,
    install_error_handlers,
)
from stages.common.hosts import HostPolicy, configured_names, parse_list
from stages.common.logging_setup import configure_logging as configure_logging
from stages.common.logging_setup import install_request_ids
from stages.common.runtime import tune_process

# The *_created timestamps double every series and no dashboard of ours reads them.
disable_created_metrics()

# (healthy, details). Details are merged into the /health body, so they must be JSON-able.
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]
# Counters for the status page: name -> value (rendered as text, never as HTML).
StatusCounters = Callable[[], dict[str, Any]]

# Request bodies of the control endpoints are small JSON; the data path (ingestion, consolidation)
# passes its own, larger limit.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Vendored front-end libraries (uPlot) and shared page assets, served at /static/common/ by
# every service so pages work offline.
COMMON_STATIC_DIR = Path(__file__).parent / "static"
# Pages load scripts and styles only from their own origin: no inline script runs, so a record's
# text that slipped into the DOM as HTML still could not execute.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_templates = Environment(
    loader=PackageLoader("stages.common", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def require_control_token(
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Dependency for mutating endpoints: with CONTROL_TOKEN set, a matching bearer token."""
    token = get_settings().control_token
    if not token:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise Unauthorized(
            "this endpoint needs 'Authorization: Bearer <CONTROL_TOKEN>'",
        )


ControlToken = Annotated[None, Depends(require_control_token)]


def create_service_app(
    name: str,
    *,
    health: HealthCheck | None = None,
    status: StatusCounters | None = None,
    routers: Sequence[APIRouter] = (),
    lifespan: Any = None,
    description: str = "",
    status_page: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_media_types: Mapping[str, Iterable[str]] | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """``body_media_types``: per path, the media types a mutating request may send besides
    ``application/json`` (the OTLP receiver's protobuf). ``settings``: where ALLOWED_HOSTS and
    ALLOWED_ORIGINS are read (default: the process's settings)."""
    app = FastAPI(
        title=name,
        version=stages.__version__,
        description=description,
        lifespan=lifespan,
        # Counts streamed (chunked) bodies too; _DeclaredBodyLimit answers declared ones first.
        max_body_size=max_body_bytes,
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN; _serve_docs serves /docs
        # from the package instead, so it works with no internet.
        docs_url=None,
        redoc_url=None,
    )
    _serve_docs(app)
    _refuse_declared_oversized_bodies(app, max_body_bytes)
    install_request_ids(app)
    _guard_against_foreign_pages(app, settings or get_settings(), body_media_types or {})
    install_error_handlers(app)

    @app.get("/health", tags=["ops"], summary="Liveness and readiness of the service")
    def get_health() -> JSONResponse:
        healthy, details = health() if health is not None else (True, {})
        body = {"status": "healthy" if healthy else "unhealthy", "service": name, **details}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,  # documents text/plain, the exposition format's type
    )
    def get_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if status_page:

        @app.get("/", include_in_schema=False, response_class=HTMLResponse)
        def get_status_page() -> HTMLResponse:
            counters = status() if status is not None else {}
            html = _templates.get_template("status.html").render(
                name=name, version=stages.__version__, counters=counters
            )
            return html_page(html)

    app.mount("/static/common", StaticFiles(directory=COMMON_STATIC_DIR), name="common-static")
    for router in routers:
        app.include_router(router)
    _document_error_bodies(app)
    return app


DOCS_STATIC_PREFIX = "/static/swagger-ui"


def _serve_docs(app: FastAPI) -> None:
    """/docs: Swagger UI from the swagger-ui-bundle package, under the pages' CSP. The page's one
    inline script (the SwaggerUIBundle call) is allowed by its hash, nothing else inline."""
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{DOCS_STATIC_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_STATIC_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_STATIC_PREFIX}/favicon-32x32.png",
    ).body.decode()
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in scripts
    )
    csp = PAGE_CSP.replace("script-src 'self'", f"script-src 'self' {hashes}")
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def get_docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    app.mount(DOCS_STATIC_PREFIX, StaticFiles(directory=swagger_ui_path), name="swagger-ui")


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
_BODY_ERRORS = {
    "400": "The body could not be decoded or parsed",
    "413": "The body is over the service's size limit",
}


_PATH_ERROR = {"404": "Nothing is known by this name"}
_HOST_ERROR = {"400": "The Host header is not a name this service answers to"}
_BROWSER_ERRORS = {
    "403": "The request comes from a foreign web page (Origin)",
    "415": "The body's Content-Type is not one this endpoint accepts",
}


def _document_shared_errors(schema: dict[str, Any]) -> None:
    """Errors every route of a kind can answer, whether or not the route declares them: a
    foreign Host, a foreign page's write, an unreadable or oversized body, and an unknown name in
    the path."""
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            errors = dict(_HOST_ERROR)
            if method.upper() in MUTATING_METHODS:
                errors.update(_BROWSER_ERRORS)
            if "requestBody" in operation:
                errors.update(_BODY_ERRORS)
            if any(param.get("in") == "path" for param in operation.get("parameters", [])):
                errors.update(_PATH_ERROR)
            responses = operation.setdefault("responses", {})
            for code, description in errors.items():
                responses.setdefault(code, {"description": description, "content": _ERROR_CONTENT})


class _DeclaredBodyLimit:
    """413 with the usual JSON error body when Content-Length is over the limit, before anything
    reads the body (FastAPI's own limit would answer it in plain text)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.limit:
                error = PayloadTooLarge(
                    f"request body is {int(declared)} bytes; the limit is {self.limit} bytes"
                )
                body = error_body(error.error, error.message)
                await JSONResponse(body, status_code=error.status_code)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refuse_declared_oversized_bodies(app: FastAPI, limit: int) -> None:
    # Outermost, so it answers before FastAPI's body limit (which sits outside user middleware).
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: _DeclaredBodyLimit(build(), limit)  # type: ignore[method-assign]


MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_MEDIA_TYPE = "application/json"


class _BrowserGuard:
    """Refuses what only a foreign web page would send, before anything else runs.

    - A ``Host`` not in the allow-list (400): a DNS-rebinding page's requests name the
      attacker's host, so it can neither read nor write.
    - On a mutating method, an ``Origin`` other than the service's own or ALLOWED_ORIGINS (403):
      a cross-site form or ``fetch``. ``Origin: null`` (sent for same-origin requests from pages
      with ``Referrer-Policy: no-referrer``, but also by sandboxed frames) passes only with
      ``Sec-Fetch-Site: same-origin``. Clients that are not browsers send no Origin and pass.
    - On a mutating method, a body type other than JSON (or the path's extra types) (415): the
      content types a page may send cross-site without a preflight (text/plain, forms) are
      never parsed as JSON.
    """

    def __init__(
        self, app: ASGIApp, policy: HostPolicy, body_media_types: Mapping[str, frozenset[str]]
    ) -> None:
        self.app = app
        self.policy = policy
        self.body_media_types = body_media_types

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error = self.refusal(scope)
            if error is not None:
                body = error_body(error.error, error.message)
                await JSONResponse(body, status_code=error.status_code)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> StagesError | None:
        headers: dict[bytes, list[str]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.lower(), []).append(value.decode("latin-1"))
        hosts = headers.get(b"host", [])
        for host in hosts:
            if not self.policy.allows_host(host):
                return HostNotAllowed(
                    f"Host {host[:100]!r} is not a name this service answers to "
                    "(localhost, 127.0.0.1, [::1], the compose service names, ALLOWED_HOSTS)"
                )
        if scope["method"] not in MUTATING_METHODS:
            return None
        host = hosts[0] if hosts else None
        origin = (headers.get(b"origin") or [None])[0]
        fetch_site = (headers.get(b"sec-fetch-site") or [""])[0].strip().lower()
        if origin is not None:
            same_origin_null = origin.strip() == "null" and fetch_site == "same-origin"
            if not same_origin_null and not self.policy.allows_origin(origin, host):
                return Forbidden(
                    f"requests from origin {origin[:100]!r} may not change anything here; "
                    "only the service's own pages (or ALLOWED_ORIGINS) may"
                )
        elif fetch_site in {"cross-site", "same-site"}:
            return Forbidden(f"a {fetch_site} browser request may not change anything here")
        return self.media_type_refusal(scope, headers)

    def media_type_refusal(
        self, scope: Scope, headers: dict[bytes, list[str]]
    ) -> StagesError | None:
        allowed = {JSON_MEDIA_TYPE, *self.body_media_types.get(scope["path"], ())}
        names = " or ".join(sorted(allowed))
        content_type = (headers.get(b"content-type") or [None])[0]
        if content_type is None:
            length = (headers.get(b"content-length") or ["0"])[0].strip()
            if length in {"", "0"} and b"transfer-encoding" not in headers:
                return None  # a body-less POST, as curl -X POST sends it
            return UnsupportedMediaType(f"the body needs a Content-Type: {names}")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type in allowed:
            return None
        return UnsupportedMediaType(
            f"Content-Type {media_type[:100]!r} is not accepted here; send {names}"
        )


def _guard_against_foreign_pages(
    app: FastAPI, settings: Settings, body_media_types: Mapping[str, Iterable[str]]
) -> None:
    policy = HostPolicy.build(configured_names(settings), parse_list(settings.allowed_origins))
    types = {path: frozenset(t.lower() for t in kinds) for path, kinds in body_media_types.items()}
    build = app.build_middleware_stack
    # Outermost of all: a foreign page's request is refused before any limit or handler runs.
    app.build_middleware_stack = lambda: _BrowserGuard(build(), policy, types)  # type: ignore[method-assign]


def _document_error_bodies(app: FastAPI) -> None:
    """FastAPI documents 422 with its own ``{"detail": [{loc, msg, type}]}``; our handler answers
    ``ErrorBody``, so the document says that instead (clients and schemathesis check against it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = ErrorBody.model_json_schema()
            schemas["ErrorBody"] = ErrorBody.model_json_schema()
            _document_shared_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def html_page(html: str) -> HTMLResponse:
    """An HTML response with the pages' Content-Security-Policy and no-sniff headers."""
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": PAGE_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 above ``limit`` bytes: before reading anything when
    Content-Length says so, else as soon as the stream passes the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} bytes")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
    return bytes(body)


def run_service(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` in the foreground (the ``python -m stages.<service>`` entry points)."""
    tune_process(get_settings().memory_reclaim_seconds)
    # log_config=None: uvicorn's lines go through configure_logging's handler (LOG_FORMAT).
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)


@dataclass(slots=True)  # slots: setting uvicorn's ``should_exit`` here fails loudly
class ServingThread:
    """An app served from a daemon thread; ``stop`` before the process exits."""

    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        """Close the server and wait for its thread: an event loop still running in a daemon
        thread while the interpreter finalizes can kill the process (SIGSEGV) after an
        otherwise clean shutdown."""
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(app: FastAPI, host: str, port: int) -> ServingThread:
    """Serve ``app`` from a daemon thread, for processes whose main thread does other work."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, log_config=None
        )
    )
    thread = threading.Thread(target=server.run, name=f"http-{port}", daemon=True)
    thread.start()
    return ServingThread(server, thread)

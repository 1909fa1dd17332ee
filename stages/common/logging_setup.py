"""The one logging setup of every process: text (default) or one JSON object per line.

``LOG_FORMAT=json`` makes each line of a process's output a JSON object that log shippers
(CloudWatch, Loki, Vector) read without a parser: ``time``, ``level``, ``logger``, ``message``,
``process``, plus ``request_id`` inside an HTTP request and ``exception`` with the traceback.
Uvicorn's, botocore's and Python's own warnings go through the same handler, and so do uncaught
exceptions, so nothing the process writes is in another shape.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

from stages.common.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
REQUEST_ID_HEADER = "x-request-id"

# The current HTTP request's id, set by RequestIdMiddleware; None outside a request. Starlette's
# thread pool copies the context, so synchronous endpoints see it too.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# A caller's own id is kept (it ties our lines to theirs) when it cannot break a log line.
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is written too.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "taskName"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        current = request_id.get()
        if current is not None:
            body["request_id"] = current
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key not in body:
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(body, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with ``request_id=...`` appended inside an HTTP request."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        current = request_id.get()
        if current is None:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} request_id={current}{newline}{rest}"


def configure_logging(settings: Settings) -> None:
    """Replace whatever logging setup the process has with the one ``settings`` ask for."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # Libraries that bring their own handlers (uvicorn, werkzeug) write through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "werkzeug"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("stages").critical("uncaught exception", exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    logging.getLogger("stages").critical(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIdMiddleware:
    """Gives every HTTP request an id: the caller's ``X-Request-ID`` when it is a plain token,
    else a new one. It is on every log line written while the request runs and is sent back in
    the ``X-Request-ID`` response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        current = given if _CALLER_ID.fullmatch(given) else uuid.uuid4().hex
        header = (REQUEST_ID_HEADER.encode(), current.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = request_id.set(current)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


def install_request_ids(app: Any) -> None:
    """Wrap the app's whole middleware stack, so even answers given before routing (a body too
    large, an unknown path) carry an id."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: RequestIdMiddleware(build())

"""Typed errors with their HTTP status, rendered the same way by every service.

Domain code raises ``StagesError`` subclasses named after the condition; ``install_error_handlers``
turns them (and FastAPI's validation errors) into ``{"error": ..., "detail": ...}`` bodies. Any
other exception is a bug: it is logged and answered 500 with no internals in the body.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class StagesError(Exception):
    status_code = 400
    error = "bad_request"

    def __init__(self, message: str, *, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = headers or {}


class NotFound(StagesError):
    status_code = 404
    error = "not_found"


class Conflict(StagesError):
    status_code = 409
    error = "conflict"


class Unprocessable(StagesError):
    status_code = 422
    error = "unprocessable"


class Unauthorized(StagesError):
    status_code = 401
    error = "unauthorized"


class HostNotAllowed(StagesError):
    status_code = 400
    error = "host_not_allowed"


class Forbidden(StagesError):
    status_code = 403
    error = "forbidden"


class UnsupportedMediaType(StagesError):
    status_code = 415
    error = "unsupported_media_type"


class PayloadTooLarge(StagesError):
    status_code = 413
    error = "payload_too_large"


class Unavailable(StagesError):
    """The service cannot accept the request now; callers retry after ``Retry-After``."""

    status_code = 503
    error = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, detail: Any = None):
        super().__init__(
            message, detail=detail, headers={"Retry-After": str(max(1, round(retry_after)))}
        )


class ErrorBody(BaseModel):
    """The body of every error response; OpenAPI documents 422 (and other errors) with it."""

    error: str = Field(description="validation_error, not_found, conflict, unavailable, ...")
    message: str
    detail: Any = Field(None, description="validation errors: [{location, problem}, ...]")


def error_body(error: str, message: str, detail: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "message": message}
    if detail is not None:
        body["detail"] = detail
    return body


class ErrorResponse(JSONResponse):
    """A JSON error that always renders: a lone surrogate echoed from the request (a field name,
    a path) is written as its ``\\udXXX`` escape instead of failing the UTF-8 encoding."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StagesError)
    async def _stages_error(_: Request, exc: StagesError) -> JSONResponse:
        return ErrorResponse(
            error_body(exc.error, exc.message, exc.detail),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "location": ".".join(str(part) for part in err.get("loc", ())),
                "problem": err.get("msg", ""),
            }
            for err in exc.errors()
        ]
        return ErrorResponse(
            error_body("validation_error", "the request does not match the API", problems),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # A streamed body over the limit is refused by Starlette; same name as our own 413.
        name = PayloadTooLarge.error if exc.status_code == 413 else "http_error"
        return ErrorResponse(
            error_body(name, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ErrorResponse(
            error_body("internal_error", "internal error; see the service log"), 500
        )

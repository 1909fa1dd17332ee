"""Corrections to moto's core, for the emulator's CPU and memory whatever the service.

- moto put a fresh request id into every response body with a look-behind regular expression
  over the whole body, XML or not: on GetRecords answers of megabytes that was a large share of
  the emulator's CPU. It now runs only on bodies that contain ``<RequestId>``.
- moto lists its own package directory (a ``listdir`` and an ``isdir`` call per entry) on every
  request to find the backend for the Host header; the list is computed once.
- moto's ``BaseModel`` appends every instance it ever creates to a class-level list, for its
  ``/moto-api/data.json`` dashboard: every record, every overwritten S3 object and every
  DynamoDB item version stayed reachable forever. Instances are no longer tracked.
"""

from __future__ import annotations

from typing import Any

from moto import backends as moto_backends
from moto.core import common_models
from moto.core.responses import BaseResponse
from moto.utilities.aws_headers import gen_amzn_requestid_long

_original_enrich = BaseResponse._enrich_response


def _enrich_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
    marker: str | bytes = b"<RequestId>" if isinstance(body, bytes) else "<RequestId>"
    if isinstance(body, str | bytes) and marker in body:
        return _original_enrich(headers, body)
    # moto's own steps, without the search of a body that has no request id to replace.
    if "status" in headers:
        headers["status"] = str(headers["status"])
    gen_amzn_requestid_long(headers)
    return headers, body


_MOTO_MODULES = tuple(moto_backends.list_of_moto_modules())


def _moto_modules() -> tuple[str, ...]:
    return _MOTO_MODULES


def _new_untracked(cls: type, *args: Any, **kwargs: Any) -> Any:
    # What BaseModel.__new__ does, minus the tracking (super(): some models are dicts too).
    return super(common_models.BaseModel, cls).__new__(cls)


def install() -> None:
    common_models.BaseModel.__new__ = staticmethod(_new_untracked)  # type: ignore[method-assign]
    BaseResponse._enrich_response = staticmethod(_enrich_response)  # type: ignore[method-assign]
    moto_backends.list_of_moto_modules = _moto_modules

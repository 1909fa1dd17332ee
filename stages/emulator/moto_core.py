"""Corrections to moto's core, for the emulator's CPU and memory whatever the service.

- moto put a fresh request id into every response body with a look-behind regular expression
  over the whole body, XML or not: on GetRecords answers of megabytes that was a large share of
  the emulator's CPU. It now runs only on bodies that contain ``<RequestId>``.
- moto lists its own package directory (a ``listdir`` and an ``isdir`` call per entry) on every
  request to find the backend for the Host header; the list is computed once.
- moto's ``BaseModel`` appends every instance it ever creates to a class-level list, for its
  ``/moto-api/data.json`` dashboard: every record, every overwritten S3 object and every
  DynamoDB item version stayed reachable forever. Instances are no longer tracked.
- moto looked up an action by listing every function of the response class
  (``inspect.getmembers``) on every request; the names are computed once per class.
- A JSON-protocol request's body was parsed again for every parameter read from it (three
  times for a PutRecords of up to 5 MiB); it is parsed once per request, with orjson (the
  standard parser where orjson refuses a body, so the values read are the same).
- JSON answers were encoded with ``json.dumps``, whose escaping loop was the largest single cost
  of a GetRecords answer (megabytes of base64); orjson encodes them. The JSON value is the
  same; non-ASCII text is sent as UTF-8 rather than ``\\u`` escapes, and anything orjson does
  not encode exactly like ``json`` (other types, integers beyond 64 bits) still goes through
  ``json.dumps``. Blobs in them (GetRecords' record data) are base64-encoded with pybase64.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import orjson
from moto import backends as moto_backends
from moto.core import common_models
from moto.core import responses as moto_responses
from moto.core.responses import BaseResponse
from moto.core.serialize import BaseJSONSerializer, ResponseSerializer
from moto.utilities.aws_headers import gen_amzn_requestid_long

from stages.common import base64_codec

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


@functools.cache
def _method_names_from_class(clazz: type) -> frozenset[str]:
    # moto only asks whether the action is among them.
    return frozenset(_original_method_names(clazz))


_original_method_names = moto_responses.method_names_from_class
_NOT_JSON = object()


def _parse_json(body: str | bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        # What orjson refuses and json takes (NaN, integers beyond 64 bits, lone surrogates).
        return json.loads(body)
    except (ValueError, TypeError):
        return _NOT_JSON


_original_get_param = BaseResponse._get_param


def _get_param(self: BaseResponse, param_name: str, if_none: Any = None) -> Any:
    """moto's ``_get_param`` (query string, then JSON body, then path, then ``if_none``) with
    the JSON body parsed once per request."""
    if self.automated_parameter_parsing:
        return _original_get_param(self, param_name, if_none)
    value = self.querystring.get(param_name)
    if value is not None:
        return value[0]
    body = self.body
    if body is not None:
        cached = self.__dict__.get("_parsed_json_body")
        if cached is None or cached[0] is not body:
            cached = self.__dict__["_parsed_json_body"] = (body, _parse_json(body))
        parsed = cached[1]
        if isinstance(parsed, dict) and param_name in parsed:
            return parsed[param_name]
    if self.uri_match and param_name in self.uri_match:
        return self.uri_match[param_name]
    return if_none


_original_serialize_body = BaseJSONSerializer._serialize_body
# Types orjson would encode where json.dumps raises (or encodes otherwise) go back to json.dumps.
_ORJSON_STRICT = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _serialize_body(self: BaseJSONSerializer, body: Mapping[str, Any]) -> str:
    if not self.pretty_print:
        try:
            return orjson.dumps(body, option=_ORJSON_STRICT).decode("utf-8")
        except TypeError:
            pass
    return _original_serialize_body(self, body)


def _base64(self: ResponseSerializer, value: str | bytes) -> str:
    if isinstance(value, str):
        value = value.encode(self.DEFAULT_ENCODING)
    return base64_codec.encode(value).decode("ascii")


def install() -> None:
    common_models.BaseModel.__new__ = staticmethod(_new_untracked)  # type: ignore[method-assign]
    BaseResponse._enrich_response = staticmethod(_enrich_response)  # type: ignore[method-assign]
    moto_backends.list_of_moto_modules = _moto_modules
    moto_responses.method_names_from_class = _method_names_from_class  # type: ignore[assignment]
    BaseResponse._get_param = _get_param  # type: ignore[method-assign]
    BaseJSONSerializer._serialize_body = _serialize_body  # type: ignore[method-assign]
    ResponseSerializer._base64 = _base64  # type: ignore[method-assign]

"""A description of every pattern kind, read from the kinds' own models (one source of truth)."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic_core import PydanticUndefined

from stages.patterns.compose import KIND_MODELS
from stages.patterns.schemas import Parameter, PatternInfo

_BOUND_NAMES = ("gt", "ge", "lt", "le")


def describe_kinds() -> list[PatternInfo]:
    return [_describe(kind, model) for kind, model in KIND_MODELS.items()]


def _describe(kind: str, model: Any) -> PatternInfo:
    parameters = [
        _parameter(name, field) for name, field in model.model_fields.items() if name != "kind"
    ]
    return PatternInfo(
        kind=kind,
        role=model.role,
        description=inspect.cleandoc(model.__doc__ or ""),
        parameters=parameters,
    )


def _parameter(name: str, field: Any) -> Parameter:
    bounds = {
        bound: getattr(meta, bound)
        for meta in field.metadata
        for bound in _BOUND_NAMES
        if getattr(meta, bound, None) is not None
    }
    required = field.default is PydanticUndefined and field.default_factory is None
    return Parameter(
        name=name,
        type=_type_name(field.annotation),
        required=required,
        default=None if required else field.default,
        description=field.description or "",
        bounds=bounds,
    )


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")

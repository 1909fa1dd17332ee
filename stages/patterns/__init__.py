"""Pattern Generator: deterministic time-series shapes, as a library and as the 8001 service."""

from stages.patterns.compose import (
    Component,
    Composition,
    PatternKind,
    anomaly_component,
    evaluate,
    parse_component,
)

__all__ = [
    "Component",
    "Composition",
    "PatternKind",
    "anomaly_component",
    "evaluate",
    "parse_component",
]

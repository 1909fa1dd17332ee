"""The detectors, one module each, all behind ``base.Detector`` (``base.VectorDetector`` for the
multivariate one). ``from_state`` rebuilds any of them from what its ``state()`` returned."""

from __future__ import annotations

from typing import Any

from stages.detection.detectors.base import Detector, VectorDetector, squash
from stages.detection.detectors.iqr import IQRFences
from stages.detection.detectors.multivariate import RobustMahalanobis
from stages.detection.detectors.rcf import RandomCutForest
from stages.detection.detectors.robust_z import RobustZ
from stages.detection.detectors.rules import Rule, RuleDetector, parse_rule, parse_rules
from stages.detection.detectors.seasonal import SeasonalBaseline
from stages.detection.detectors.spectral_residual import SpectralResidual

KINDS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        RobustZ,
        IQRFences,
        SeasonalBaseline,
        SpectralResidual,
        RandomCutForest,
        RobustMahalanobis,
        RuleDetector,
    )
}


def from_state(state: dict[str, Any]) -> Any:
    """The detector ``state`` was taken from, whatever its kind."""
    kind = state.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown detector kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    return KINDS[kind].from_state(state)


__all__ = [
    "KINDS",
    "Detector",
    "IQRFences",
    "RandomCutForest",
    "RobustMahalanobis",
    "RobustZ",
    "Rule",
    "RuleDetector",
    "SeasonalBaseline",
    "SpectralResidual",
    "VectorDetector",
    "from_state",
    "parse_rule",
    "parse_rules",
    "squash",
]

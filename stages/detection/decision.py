"""The decision engine: detector scores of one point -> one decision, by weighted voting.

A detector *votes* for a point when its score reaches the policy's ``vote_threshold`` (0.5: each
detector's own threshold, see ``detectors.base.squash``). The point is anomalous when the voters'
weights add up to ``quorum`` or more, or when a detector listed in ``sufficient`` (the configured
rules, by default) votes. The quorum is a weight, not a share, so that it means the same whether
or not a series also has rules or a multivariate detector. Detectors with no weight are reported
but never vote.

The decision's ``score`` is the score a quorum agrees on: the highest s such that detectors
weighing ``quorum`` or more all scored at least s, or a ``sufficient`` detector's score if that
is higher. It is in [0, 1], rises with every detector's score, and reaches the vote threshold
exactly when the point is anomalous, so "score >= 0.5" and the decision never disagree. ``mean``
is the weighted mean of the scores, for display. Each signal type (``latency_p95_ms``,
``error_rate``, ...) may have its own policy; the others use the default one. Pure and
deterministic: the same scores always give the same decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The seasonal and the multivariate detectors weigh double, so that with the default quorum of 2
# the vote of either alone, or of any two others, makes a point anomalous: each sees what the
# others cannot (a value ordinary for the day but not for the hour; signals each in their range
# that no longer move together), while a range detector alone is too easily surprised.
DEFAULT_WEIGHTS: dict[str, float] = {
    "robust_z": 1.0,
    "iqr": 1.0,
    "seasonal": 2.0,
    "spectral_residual": 1.0,
    "rcf": 1.0,
    "multivariate": 2.0,
    "rules": 1.0,
}


@dataclass(frozen=True, slots=True)
class Decision:
    anomalous: bool
    score: float  # the score a quorum of detectors agrees on, in [0, 1]
    support: float  # voters' share of the weight that scored the point, in [0, 1]
    voters: tuple[str, ...]  # detectors whose score reached the vote threshold, sorted
    mean: float = 0.0  # weighted mean of the detectors' scores, in [0, 1]


class VotingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    quorum: float = Field(default=2.0, gt=0.0)
    vote_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    sufficient: frozenset[str] = frozenset({"rules"})

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = sorted(name for name, weight in weights.items() if not weight >= 0.0)
        if bad:
            raise ValueError(f"weights must be >= 0: {', '.join(bad)}")
        return weights

    def decide(self, scores: Mapping[str, float]) -> Decision:
        weighted: list[tuple[float, float, str]] = []
        for name in sorted(scores):
            weight = self.weights.get(name, 0.0)
            if weight > 0.0:
                weighted.append((min(max(float(scores[name]), 0.0), 1.0), weight, name))
        total = sum(weight for _, weight, _ in weighted)
        if total <= 0.0:
            return Decision(False, 0.0, 0.0, ())
        voters = tuple(name for score, _, name in weighted if score >= self.vote_threshold)
        voting = sum(weight for score, weight, _ in weighted if score >= self.vote_threshold)
        # The tolerance keeps weights such as 0.1 * 20 from missing a quorum of 2 by rounding.
        needed = self.quorum - 1e-9
        agreed = 0.0
        gathered = 0.0
        for score, weight, _ in sorted(weighted, reverse=True):
            gathered += weight
            if gathered >= needed:
                agreed = score
                break
        for score, _, name in weighted:
            if name in self.sufficient:
                agreed = max(agreed, score)
        anomalous = agreed >= self.vote_threshold
        mean = sum(score * weight for score, weight, _ in weighted) / total
        return Decision(anomalous, agreed, voting / total, voters, mean)


class DecisionEngine(BaseModel):
    """A voting policy per signal type, and the default one for the others."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: VotingPolicy = Field(default_factory=VotingPolicy)
    by_signal_type: dict[str, VotingPolicy] = Field(default_factory=dict)

    def policy(self, signal_type: str | None = None) -> VotingPolicy:
        if signal_type is None:
            return self.default
        return self.by_signal_type.get(signal_type, self.default)

    def decide(self, scores: Mapping[str, float], signal_type: str | None = None) -> Decision:
        return self.policy(signal_type).decide(scores)

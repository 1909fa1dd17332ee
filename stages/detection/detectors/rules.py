"""Rules from configuration: ``<signal> <op> <threshold> [for <n> [points]]``.

``error_rate > 0.05 for 3 points`` fires on the third consecutive point above 5 % and stays
fired while the condition holds; operators are ``>``, ``>=``, ``<``, ``<=``. Several rules are
separated by ``;`` or new lines. A ``RuleDetector`` holds the rules of one signal and scores 1 while
any of them fires, else 0: a rule is an operator's explicit statement, not a statistic to weigh.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

from stages.detection.detectors.base import check_finite

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_RULE = re.compile(
    r"^\s*(?P<signal>[A-Za-z_][A-Za-z0-9_.:-]*)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<threshold>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s+for\s+(?P<points>\d+)(?:\s+points?)?)?\s*$"
)


class RuleSyntaxError(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__(
            f"not a rule: {text!r} (expected '<signal> <op> <number> [for <n> points]', "
            f"op one of {', '.join(_OPERATORS)})"
        )
        self.text = text


@dataclass(frozen=True, slots=True)
class Rule:
    signal: str
    op: str
    threshold: float
    points: int = 1

    def holds(self, value: float) -> bool:
        return _OPERATORS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.signal} {self.op} {self.threshold!r} for {self.points} points"


def parse_rule(text: str) -> Rule:
    match = _RULE.match(text)
    if match is None:
        raise RuleSyntaxError(text)
    threshold = float(match["threshold"])
    points = int(match["points"] or 1)
    if not math.isfinite(threshold) or points < 1:
        raise RuleSyntaxError(text)
    return Rule(match["signal"], match["op"], threshold, points)


def parse_rules(text: str) -> list[Rule]:
    """Every rule in ``text`` (``;`` or new line between rules; blank parts ignored)."""
    return [parse_rule(part) for part in re.split(r"[;\n]", text) if part.strip()]


class RuleDetector:
    kind = "rules"

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self.streaks = [0] * len(self.rules)

    @classmethod
    def for_signal(cls, rules: Iterable[Rule], signal: str) -> Self:
        return cls(rule for rule in rules if rule.signal == signal)

    def fired(self) -> list[Rule]:
        return [r for r, n in zip(self.rules, self.streaks, strict=True) if n >= r.points]

    def update(self, timestamp: float, value: float) -> float:
        value = check_finite(value)
        self.streaks = [
            streak + 1 if rule.holds(value) else 0
            for rule, streak in zip(self.rules, self.streaks, strict=True)
        ]
        return 1.0 if self.fired() else 0.0

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rules": [str(rule) for rule in self.rules],
            "streaks": list(self.streaks),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(parse_rule(text) for text in state["rules"])
        detector.streaks = [int(n) for n in state["streaks"]]
        return detector

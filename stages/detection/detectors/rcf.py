"""Random Cut Forest on shingled values, from the ``rcf3`` package (Rust, seeded, serialisable).

Each point is scored by the forest as the last element of a shingle of the ``shingle_size``
latest values (so a change of shape scores, not only an unusual value), then added to the
forest. The forest's raw score (its average "displacement" of the point, about 0.5-2 for normal
data and growing for isolated points) has no fixed scale: it depends on the capacity and on the
data, and its distribution has a long right tail even on clean data (points at the edges of a
seasonal cycle are sparser than the rest). So the raw score is read against the forest's own
recent raw scores (the last ``score_window``): x = (raw - median) / (99th percentile - median),
and the score is ``squash(x, threshold)``: a point twice as far above the usual score as the
1-in-100 score (x = 2) scores 0.5. Warm-up: until the forest is ready (``capacity / 4`` points)
and ``warmup`` raw scores have been seen.
"""

from __future__ import annotations

from typing import Any, Self

import rcf3

from stages.detection.detectors.base import RollingWindow, check_finite, squash


class RandomCutForest:
    kind = "rcf"

    def __init__(
        self,
        shingle_size: int = 4,
        num_trees: int = 30,
        capacity: int = 256,
        seed: int = 42,
        score_window: int = 512,
        warmup: int = 32,
        threshold: float = 2.0,
    ) -> None:
        if not 2 <= warmup <= score_window:
            raise ValueError("rcf needs 2 <= warmup <= score_window")
        self.params = {
            "shingle_size": shingle_size,
            "num_trees": num_trees,
            "capacity": capacity,
            "seed": seed,
            "score_window": score_window,
            "warmup": warmup,
            "threshold": threshold,
        }
        self.forest = rcf3.Forest(
            1, shingle_size=shingle_size, num_trees=num_trees, capacity=capacity, seed=seed
        )
        self.raw = RollingWindow(score_window)
        self.warmup = warmup
        self.threshold = threshold

    def update(self, timestamp: float, value: float) -> float:
        value = check_finite(value)
        ready = self.forest.is_ready()
        raw = self.forest.update_and_score([value])
        if not ready:
            return 0.0
        score = 0.0
        if len(self.raw) >= self.warmup:
            usual = self.raw.median()
            spread = self.raw.quantile(0.99) - usual
            if spread > 0.0:
                score = squash((raw - usual) / spread, self.threshold)
            elif raw > usual:
                score = 1.0  # the forest placed every recent point alike, and not this one
        self.raw.push(raw)
        return score

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": dict(self.params),
            "forest": self.forest.to_json(),
            "raw": self.raw.values(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = cls(**state["params"])
        detector.forest = rcf3.Forest.from_json(state["forest"])
        detector.raw = RollingWindow(detector.raw.size, state["raw"])
        return detector

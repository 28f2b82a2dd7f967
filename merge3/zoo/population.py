"""The population of past responses: which models, and how each is scored.

Members: the base with linear probes, the experts, checkpoints along fine-tuning, the
report's merges at every coefficient of their validation grids, and merges with random
per-expert weights, random subsets of experts and random coefficients by several
methods. Every member answers every test item of every task; its per-task heads are
the probes (base) or the experts' heads (everything else; a checkpoint of expert t uses
its own head at that step for task t), as docs/formats.md prescribes for merges.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from merge3.zoo.finetune import LinearProbe
from merge3.zoo.merges import MergeSpec, report_spec

__all__ = ["TaskResponses", "Member", "grid_members", "random_members", "TaskSlice",
           "score_features"]


@dataclass(frozen=True)
class TaskResponses:
    """One model's per-item results on one task (parallel lists)."""

    item_ids: Sequence[str]
    predictions: Sequence[int]
    targets: Sequence[int]

    @property
    def scores(self) -> list[float]:
        return [float(p == t) for p, t in zip(self.predictions, self.targets)]

    @property
    def accuracy(self) -> float:
        scores = self.scores
        return sum(scores) / len(scores) if scores else 0.0

    def log_rows(self) -> list[dict[str, Any]]:
        """One :mod:`merge3.eval_logs` record per item."""
        return [{"item": item, "score": score, "prediction": int(pred), "target": int(target)}
                for item, score, pred, target in zip(self.item_ids, self.scores,
                                                     self.predictions, self.targets)]


@dataclass
class Member:
    """One population model: a name, a kind, how to make it, and its heads."""

    name: str
    kind: str  # base | expert | checkpoint | merge
    spec: MergeSpec | None = None
    method_label: str | None = None  # report method (grid merges)
    coefficient: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


def grid_members(tasks: Sequence[str], grids: Mapping[str, Sequence[float]]) -> list[Member]:
    """The report's merges at every coefficient of their grids (all experts, equal weights)."""
    out = []
    for label, grid in grids.items():
        for coefficient in grid:
            spec = report_spec(label, tasks, coefficient)
            slug = label.lower().replace(" ", "_").replace("-", "_")
            name = f"merge-{slug}" if len(grid) == 1 else f"merge-{slug}-{coefficient:g}"
            out.append(Member(name, "merge", spec, label, coefficient))
    return out


_RANDOM_METHODS = (
    ("task_arithmetic", "lambda", (0.15, 0.8), {}, {}),
    ("ties", "lambda", (0.5, 1.8), {"normalize": True}, {"density": 0.2}),
    ("tsv_m", "alpha", (0.4, 1.3), {}, {}),
    ("iso_c", "alpha", (0.4, 1.4), {}, {}),
    ("linear", None, (0.0, 0.0), {"normalize": True}, {}),
    ("dare_linear", "lambda", (0.15, 0.8), {}, {"density": 0.5}),
)


def random_members(tasks: Sequence[str], count: int, seed: int) -> list[Member]:
    """Merges with random expert subsets, weights and coefficients (seeded)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        method, coef_name, (low, high), fixed, per_model = _RANDOM_METHODS[i % len(_RANDOM_METHODS)]
        k = rng.randint(2, len(tasks)) if len(tasks) > 2 else len(tasks)
        chosen = tuple(sorted(rng.sample(list(tasks), k), key=list(tasks).index))
        weights = tuple(round(rng.uniform(0.2, 1.0), 3) for _ in chosen)
        params = dict(fixed)
        if coef_name is not None:
            params[coef_name] = round(rng.uniform(low, high), 3)
        spec = MergeSpec(method, chosen, weights, params, per_model)
        out.append(Member(f"random-{i:02d}-{method}", "merge", spec))
    return out


@dataclass(frozen=True)
class TaskSlice:
    """Where a task's items sit in the concatenated evaluation features of one split."""

    task: str
    start: int
    stop: int
    item_ids: tuple[str, ...]
    labels: tuple[int, ...]


def score_features(feats: torch.Tensor, slices: Sequence[TaskSlice],
                   heads: Mapping[str, LinearProbe]) -> dict[str, TaskResponses]:
    """Apply each task's head to its rows of ``feats``: per-item predictions."""
    out = {}
    for part in slices:
        logits = heads[part.task].logits(feats[part.start: part.stop])
        predictions = logits.argmax(1).tolist()
        out[part.task] = TaskResponses(part.item_ids, predictions, part.labels)
    return out

"""In-memory merges of the zoo's encoder through merge3's own methods.

A ``MergeSpec`` is a mergekit-style recipe over zoo names (``zoo:minilm/base``,
``zoo:minilm/expert/<task>``), so ``merge3 merge`` can rebuild any population member on
disk. ``merge_state`` runs the executor ``run_merge`` runs
(``merge3.executor.merge_model`` of the recipe) on state dicts already in memory, which
is what the population and the report need: no disk, no reload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from merge3.executor import StateDict, count_layers, merge_job, merge_model
from merge3.methods import get_method
from merge3.recipe import Recipe, parse_recipe

__all__ = ["MergeSpec", "merge_state", "report_spec", "REPORT_METHODS", "COEFFICIENT_GRIDS",
           "zoo_name"]


def zoo_name(kind: str, task: str | None = None) -> str:
    """``minilm/base`` or ``minilm/expert/<task>``: names ``merge3.zoo.resolve`` knows."""
    return "minilm/base" if kind == "base" else f"minilm/expert/{task}"


@dataclass(frozen=True)
class MergeSpec:
    """A merge of some experts: method, per-expert weights, global parameters."""

    method: str
    tasks: tuple[str, ...]
    weights: tuple[float, ...]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    per_model: Mapping[str, float] = field(default_factory=dict)  # e.g. {"density": 0.2}

    def recipe(self, size: str = "demo") -> Recipe:
        """The merge3 recipe of this merge, over zoo names of a zoo of ``size``."""
        suffix = "" if size == "demo" else f"@{size}"
        method = get_method(self.method)
        models = [
            {"model": f"zoo:{zoo_name('expert', t)}{suffix}",
             "parameters": {**({"weight": float(w)} if "weight" in method.per_model else {}),
                            **{k: float(v) for k, v in self.per_model.items()}}}
            for t, w in zip(self.tasks, self.weights)
        ]
        data: dict[str, Any] = {"merge_method": self.method, "models": models,
                                "parameters": dict(self.parameters)}
        if method.base != "unused":
            data["base_model"] = f"zoo:{zoo_name('base')}{suffix}"
        return parse_recipe(data, source=f"zoo merge {self.method}")


def merge_state(
    spec: MergeSpec,
    base: Mapping[str, torch.Tensor],
    experts: Mapping[str, Mapping[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Merge the experts named in ``spec`` (state dicts in memory) tensor by tensor."""
    recipe = spec.recipe()
    job = merge_job(recipe, num_layers=count_layers(base))
    inputs = [StateDict(experts[t], f"expert {t}") for t in spec.tasks]
    return dict(merge_model(job, StateDict(base, "base"), inputs, list(base)))


# The report's methods and the coefficients searched on validation for each.
REPORT_METHODS: dict[str, tuple[str, str | None, dict[str, Any], dict[str, float]]] = {
    # label: (method, searched global parameter, fixed globals, fixed per-model values)
    "averaging": ("linear", None, {"normalize": True}, {}),
    "task arithmetic": ("task_arithmetic", "lambda", {}, {}),
    "TIES": ("ties", "lambda", {"normalize": True}, {"density": 0.2}),
    "TSV-M": ("tsv_m", "alpha", {}, {}),
    "Iso-C": ("iso_c", "alpha", {}, {}),
    "Iso-CTS": ("iso_cts", "alpha", {}, {}),
}

COEFFICIENT_GRIDS: dict[str, tuple[float, ...]] = {
    "averaging": (1.0,),
    "task arithmetic": (0.1, 0.15, 0.2, 0.35, 0.5, 0.75),
    "TIES": (0.4, 0.6, 1.0, 1.4, 1.8),
    "TSV-M": (0.8, 1.0, 1.2, 1.4),
    "Iso-C": (0.75, 1.0, 1.25, 1.5, 1.75),
    "Iso-CTS": (0.75, 1.0, 1.25, 1.5, 1.75),
}


def report_spec(label: str, tasks: Sequence[str], coefficient: float) -> MergeSpec:
    """The MergeSpec of report method ``label`` at ``coefficient``, equal task weights."""
    method, searched, fixed, per_model = REPORT_METHODS[label]
    params = dict(fixed)
    if searched is not None:
        params[searched] = float(coefficient)
    return MergeSpec(method, tuple(tasks), tuple(1.0 for _ in tasks), params, per_model)

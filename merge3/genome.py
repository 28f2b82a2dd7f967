"""Search space <-> merge recipe.

A genome is a flat mapping ``gene name -> float``. Gene groups are declared per merge
parameter: one value for the whole model, or one per expert (``per: model``), each
optionally split into ``layer_groups`` values that are interpolated across the layers
exactly as a mergekit gradient is (G = number of layers gives one value per layer).
A genome decodes to an ordinary recipe, so any candidate can be rebuilt with
``merge3 merge``; a recipe encodes back to the same genome.

Examples of gene groups (YAML, under ``genome:`` in a search config):

    weight: {per: model, layer_groups: 3, low: 0.0, high: 1.5}   # TA/TSV-M per-task scales
    density: {per: model, low: 0.1, high: 1.0}                   # TIES/DARE densities
    alpha: {low: 0.5, high: 2.0}                                 # Iso/TSV global scale
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from merge3.errors import RecipeError
from merge3.methods import get_method
from merge3.registry import did_you_mean

__all__ = ["GeneGroup", "Gene", "Genome"]


class GeneGroup(BaseModel):
    """One merge parameter searched within [low, high]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per: Literal["model", "global"] = "global"
    layer_groups: int = 1
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> GeneGroup:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.layer_groups < 1:
            raise ValueError("layer_groups must be ≥ 1")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled gene needs low > 0")
        return self


@dataclass(frozen=True, slots=True)
class Gene:
    name: str  # e.g. "weight/topic/1"
    parameter: str
    model: str | None  # expert name for per-model genes
    layer_group: int | None
    low: float
    high: float
    log: bool


class Genome:
    """The genes of one search: ``method``'s parameters over ``experts``."""

    def __init__(
        self,
        method: str,
        experts: Mapping[str, str],
        groups: Mapping[str, GeneGroup | Mapping[str, Any]],
        *,
        base_model: str | None = None,
        fixed: Mapping[str, Any] | None = None,
        dtype: str | None = None,
    ) -> None:
        self.method = get_method(method)
        self.experts = dict(experts)
        self.base_model = base_model
        self.fixed = dict(fixed or {})
        self.dtype = dtype
        self.groups = {
            k: v if isinstance(v, GeneGroup) else GeneGroup.model_validate(v)
            for k, v in groups.items()
        }
        if self.method.base == "required" and base_model is None:
            raise RecipeError(f"{self.method.name} needs a base model.",
                              fix="set `base_model` in the search config.")
        for name, group in self.groups.items():
            self._check_group(name, group)
        self.genes = self._expand()

    def _check_group(self, name: str, group: GeneGroup) -> None:
        known = self.method.parameter_names
        if name not in known:
            raise RecipeError(
                f"genome: {self.method.name} has no parameter {name!r}."
                f"{did_you_mean(name, sorted(known))}",
                fix=f"search one of: {', '.join(sorted(known))}.",
            )
        if group.per == "model" and name not in self.method.per_model:
            raise RecipeError(f"genome: {name!r} is a global parameter of {self.method.name}.",
                              fix=f"write `{name}: {{per: global, ...}}`.")
        if name in self.fixed:
            raise RecipeError(f"genome: {name!r} is both searched and fixed.",
                              fix="remove it from `fixed` or from `genome`.")

    def _expand(self) -> list[Gene]:
        genes = []
        for name, group in self.groups.items():
            owners: list[str | None] = list(self.experts) if group.per == "model" else [None]
            for owner in owners:
                for g in range(group.layer_groups):
                    parts = [name] + ([owner] if owner else [])
                    parts += [str(g)] if group.layer_groups > 1 else []
                    genes.append(Gene("/".join(parts), name, owner,
                                      g if group.layer_groups > 1 else None,
                                      group.low, group.high, group.log))
        return genes

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.genes]

    def _values(self, genome: Mapping[str, float], parameter: str, owner: str | None):
        picked = [genome[g.name] for g in self.genes if g.parameter == parameter
                  and g.model == owner]
        return picked[0] if len(picked) == 1 else [float(v) for v in picked]

    def decode(self, genome: Mapping[str, float]) -> dict[str, Any]:
        """The recipe (a mergekit-style dict) that this genome stands for."""
        missing = [n for n in self.names if n not in genome]
        if missing:
            raise RecipeError(f"Genome lacks gene {missing[0]!r}.", fix="pass every gene.")
        models = []
        for expert, path in self.experts.items():
            params = {name: self._values(genome, name, expert)
                      for name, group in self.groups.items() if group.per == "model"}
            models.append({"model": path, "parameters": params})
        parameters = dict(self.fixed)
        parameters.update({name: self._values(genome, name, None)
                           for name, group in self.groups.items() if group.per == "global"})
        recipe: dict[str, Any] = {"merge_method": self.method.name, "models": models,
                                  "parameters": parameters}
        if self.base_model is not None:
            recipe["base_model"] = self.base_model
        if self.dtype:
            recipe["dtype"] = self.dtype
        return recipe

    def encode(self, recipe: Mapping[str, Any]) -> dict[str, float]:
        """The genome of a recipe produced by :meth:`decode` (the inverse map)."""
        by_path = {m["model"]: m.get("parameters", {}) for m in recipe["models"]}
        values: dict[str, float] = {}
        for gene in self.genes:
            if gene.model is not None:
                setting = by_path[self.experts[gene.model]][gene.parameter]
            else:
                setting = recipe["parameters"][gene.parameter]
            values[gene.name] = float(
                setting[gene.layer_group] if gene.layer_group is not None else setting
            )
        return values

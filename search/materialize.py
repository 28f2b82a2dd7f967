"""Materialise candidate merges in memory, reusing what does not depend on the genome.

A search worker builds hundreds of merges of the same base and experts, so it holds
them once and keeps one :class:`merge3.executor.MergeCache`: a method's genome-independent
work (TSV-M's orthogonalised factors: a per-task weight only scales its task's block of
singular values), the alignment of the experts, and which tensors no expert changed are
computed for the first candidate and reused. Each candidate is
:func:`merge3.executor.merge_model` of its decoded recipe — the same code and numbers
as ``merge3 merge`` of that recipe (a test checks every method bit for bit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from merge3.checkpoints import DTYPES
from merge3.executor import MergeCache, StateDict, count_layers, merge_job, merge_model
from merge3.recipe import parse_recipe

__all__ = ["Materializer"]


def _float(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


class Materializer:
    """Base + experts held in memory; ``materialize(recipe)`` -> merged state dict."""

    def __init__(
        self,
        base: Mapping[str, torch.Tensor],
        experts: list[Mapping[str, torch.Tensor]],
        *,
        num_layers: int | None = None,
    ) -> None:
        self.base = StateDict(_float(base), "base")
        self.experts = [StateDict(_float(e), f"expert {i}") for i, e in enumerate(experts)]
        self.num_layers = num_layers or count_layers(base)
        self.cache = MergeCache()  # genome-independent work, computed once

    def materialize(self, recipe: Mapping[str, Any], *, seed: int | None = None
                    ) -> dict[str, torch.Tensor]:
        """The merged state dict of a decoded recipe (its experts in this worker's order)."""
        parsed = parse_recipe(dict(recipe), source="candidate recipe")
        out_dtype = DTYPES[parsed.output_dtype] if parsed.output_dtype else None
        job = merge_job(parsed, num_layers=self.num_layers, out_dtype=out_dtype)
        if seed is not None:
            job = replace(job, seed=seed)
        return dict(merge_model(job, self.base, self.experts, self.base.names(),
                                cache=self.cache))

"""Materialise candidate merges in memory, reusing what does not depend on the genome.

A search worker builds hundreds of merges of the same base and experts. The task
vectors are computed once. For TSV-M the per-task singular factors and their
orthogonalised concatenations U⊥, V⊥ do not depend on the per-task weights (a weight
only scales its task's block of singular values), so they are computed once per
matrix and each candidate costs one product U⊥ diag(w·s) V⊥ᵀ. Every other method goes
through :func:`merge3.merging.merge_tensor` with the same per-tensor semantics as a
``merge3 merge`` of the decoded recipe (a test checks the two agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from merge3.merging import layer_position, merge_tensor
from merge3.methods import get_method
from merge3.methods.tsv import all_zero, is_svd_target, orthogonalize, rank_per_task, truncated_svd
from merge3.recipe import resolve_parameter
from merge3.task_vectors import layer_index

__all__ = ["Materializer"]


class Materializer:
    """Base + experts held in memory; ``materialize(recipe)`` -> merged state dict."""

    def __init__(
        self,
        base: Mapping[str, torch.Tensor],
        experts: list[Mapping[str, torch.Tensor]],
        *,
        num_layers: int | None = None,
    ) -> None:
        self.base = {k: v.float() if v.is_floating_point() else v for k, v in base.items()}
        self.experts = [{k: v.float() if v.is_floating_point() else v for k, v in e.items()}
                        for e in experts]
        indices = [i for n in base if (i := layer_index(n)) is not None]
        self.num_layers = num_layers or (max(indices) + 1 if indices else 1)
        self._tsv_cache: dict[tuple, Any] = {}  # genome-independent work, computed once

    def _aligned(self, method: str, max_iter: int, anchor: int, seed: int):
        key = ("align", method, max_iter, anchor, seed)
        if key not in self._tsv_cache:
            from merge3.methods.alignment import align_state_dicts

            self._tsv_cache[key] = align_state_dicts(
                method, [dict(e) for e in self.experts], max_iter=max_iter, anchor=anchor,
                seed=seed)
        return self._tsv_cache[key]

    def _tsv_factors(self, name: str, k: int):
        key = (name, k)
        if key not in self._tsv_cache:
            base = self.base[name]
            if all_zero([expert[name] - base for expert in self.experts]):
                self._tsv_cache[key] = None
                return None
            us, ss, vs = [], [], []
            for expert in self.experts:
                u, s, v = truncated_svd(expert[name] - base, k)
                us.append(u), ss.append(s), vs.append(v)
            self._tsv_cache[key] = (orthogonalize(torch.cat(us, 1)), ss,
                                    orthogonalize(torch.cat(vs, 1)))
        return self._tsv_cache[key]

    def materialize(self, recipe: Mapping[str, Any], *, seed: int = 0) -> dict[str, torch.Tensor]:
        method = get_method(recipe["merge_method"])
        settings = []
        for entry in recipe["models"]:
            params = dict(method.per_model)
            params.update(entry.get("parameters", {}))
            settings.append(params)
        globals_ = {**method.global_params, **recipe.get("parameters", {})}
        experts = self.experts
        if method.align:  # C²M³ & co.: align once, then search the mixing weights
            experts = self._aligned(method.align, int(globals_["max_iter"]),
                                    int(globals_["anchor"]), int(globals_["seed"]))
        fast_tsv = method.name == "tsv_m"
        merged: dict[str, torch.Tensor] = {}
        for name, base in self.base.items():
            if not base.is_floating_point():
                merged[name] = base
                continue
            t = layer_position(name, self.num_layers)
            if fast_tsv and is_svd_target(name, base, bool(globals_["svd_embeddings"])):
                weights = [float(resolve_parameter(s["weight"], name, t)) for s in settings]
                k_fraction = resolve_parameter(globals_["k_fraction"], name, t)
                k = rank_per_task(tuple(base.shape), len(self.experts), k_fraction)
                factors = self._tsv_factors(name, k)
                if factors is None:  # no expert moved this matrix
                    merged[name] = base
                    continue
                u_perp, singular, v_perp = factors
                s_cat = torch.cat([w * s for w, s in zip(weights, singular)])
                alpha = float(resolve_parameter(globals_["alpha"], name, t))
                merged[name] = base + alpha * (u_perp * s_cat) @ v_perp.T
                continue
            merged[name] = merge_tensor(method, name, base, [e[name] for e in experts],
                                        settings, globals_, t=t, seed=seed)
        return merged

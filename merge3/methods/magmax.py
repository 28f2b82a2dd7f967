"""MagMax: per parameter, the task-vector entry of largest magnitude (Marczak et al., ECCV
2024, https://arxiv.org/abs/2407.06322; authors' code github.com/danielm1405/magmax,
``merge_max_abs``; FusionBench's ``fusion_bench/method/magmax/magmax.py``).

τ_max[j] = τ_{t*(j)}[j] with t*(j) = argmax_t |τ_t[j]|, and θ = θ_0 + λ·τ_max. As in both
references the tasks are folded in order and a later task wins a tie (``>=``).
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method


@merge_method(
    "magmax",
    pretty_name="MagMax",
    reference="https://arxiv.org/abs/2407.06322",
    per_model={"weight": 1.0},
    masks=True,
    elementwise=True,
)
def magmax(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    lambda_: float = 0.5,
) -> torch.Tensor:
    """θ_0 + λ·(the largest-|·| entry among w_t τ_t). λ = 0.5 is the authors' released
    setting for independently fine-tuned experts (FusionBench's default); weights scale
    each τ_t before the choice (1: the paper)."""
    selected = (tensors[0] - base).mul_(float(weight[0]))
    for tensor, w in zip(tensors[1:], weight[1:]):
        candidate = (tensor - base).mul_(float(w))
        selected = torch.where(candidate.abs() >= selected.abs(), candidate, selected)
    return selected.mul_(lambda_).add_(base)

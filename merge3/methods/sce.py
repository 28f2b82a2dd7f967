"""SCE: select, calculate, erase (Wan et al., FuseChat 2024).

Follows mergekit 0.1.5 (``mergekit/merge_methods/sce.py``), per tensor:
1. *Select*: keep the ``select_topk`` fraction of entries where the task vectors
   τ_i = θ_i − θ_0 vary most across models (population variance), of those whose
   variance is non-zero; the others are zeroed in every τ_i.
2. *Calculate*: each model's weight is its mean squared τ_i entry, normalised to sum 1
   (equal weights when all are ~0).
3. *Erase*: TIES sign election on the selected τ_i; the weighted mean runs over the
   entries that agree with the elected sign.
θ = θ_0 + Σ_i w_i m_i τ_i / max(Σ_i w_i m_i, 1e-6).
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method

__all__ = ["sce_select_mask", "sce_weights", "sce"]


def sce_select_mask(task_vectors: torch.Tensor, fraction: float) -> torch.Tensor:
    """The entries SCE keeps (bool, one model's shape) from stacked τ (N × ...).

    The ``fraction`` of the entries with non-zero variance across models, largest first;
    ties at the cut are broken as ``torch.topk`` breaks them (mergekit's call).
    """
    if fraction <= 0:
        return torch.zeros_like(task_vectors[0], dtype=torch.bool)
    if fraction >= 1:
        return torch.ones_like(task_vectors[0], dtype=torch.bool)
    variance = torch.var(task_vectors, dim=0, unbiased=False)
    # int(tensor × fraction), as mergekit computes it (in float32, then truncated)
    count = int(torch.count_nonzero(variance) * fraction)
    keep = torch.zeros(variance.numel(), dtype=torch.bool, device=variance.device)
    if count:
        keep[torch.topk(variance.abs().reshape(-1), k=count, largest=True).indices] = True
    return keep.reshape(variance.shape)


def sce_weights(task_vectors: torch.Tensor) -> torch.Tensor:
    """Per-model weights (N,): mean squared entry of each τ_i over their sum."""
    weights = task_vectors.square().reshape(task_vectors.shape[0], -1).mean(dim=1)
    total = float(weights.sum())
    if abs(total) < 1e-6:
        return torch.ones_like(weights) / weights.shape[0]
    return weights / total


@merge_method(
    "sce",
    pretty_name="SCE",
    reference="https://arxiv.org/abs/2408.07990",
    masks=True,
    ranges={"select_topk": (0.0, 1.0)},
)
def sce(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    select_topk: float = 1.0,
    int8_mask: bool = False,
) -> torch.Tensor:
    """Variance-based selection, mean-square weights and TIES sign election.

    mergekit's ``sce``; ``int8_mask`` is accepted for mergekit recipes and changes nothing.
    """
    if not tensors:
        return base.clone()
    task_vectors = torch.stack([x - base for x in tensors])
    if select_topk < 1:
        task_vectors = task_vectors * sce_select_mask(task_vectors, float(select_topk))
    elected = torch.where(task_vectors.sum(dim=0) >= 0, 1.0, -1.0).to(task_vectors.dtype)
    agree = task_vectors.sign() == elected
    weights = sce_weights(task_vectors).reshape(-1, *([1] * base.dim()))
    kept = weights * agree
    merged = (task_vectors * kept).sum(dim=0)
    return base + merged / kept.sum(dim=0).clamp(min=1e-6)

"""CART: centred task vectors, low-rank (Choi et al. 2024, "Revisiting Weight Averaging for
Model Merging", https://arxiv.org/abs/2412.12153; authors' code github.com/JH-GEECS/CART,
``StaticMergeModule._merge_weights`` with ``merge_method == "CART"``).

The weight average θ_avg = θ_0 + (1/T) Σ_t τ_t is the origin; each task is re-expressed
around it, τ̄_t = θ_t − θ_avg = τ_t − mean_s τ_s, and, per attention / MLP weight matrix,
kept to its top-k singular triplets, k = max(1, ⌊ρ·min(m, n)⌋) (ρ = 0 drops them all,
ρ = 1 keeps them all):

    θ = θ_avg + λ Σ_t lowrank_k(τ̄_t)      (λ, the authors' "prior", 2.0; ρ 0.12)

Other tensors (biases, norms, embeddings) keep τ̄_t dense, whose sum is zero: they are
θ_avg's. A weight w_t scales τ_t before anything else (1: the paper).
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method
from merge3.methods.tsv import is_svd_target, svd


def low_rank(matrix: torch.Tensor, rank_ratio: float) -> torch.Tensor:
    """The authors' truncation: top max(1, ⌊ρ·r⌋) triplets (none at ρ = 0, all at ρ = 1)."""
    if rank_ratio <= 0:
        return torch.zeros_like(matrix)
    u, s, vh = svd(matrix)
    k = s.shape[0] if rank_ratio >= 1 else max(1, int(rank_ratio * s.shape[0]))
    return (u[:, :k] * s[:k]) @ vh[:k]


@merge_method(
    "cart",
    pretty_name="CART",
    reference="https://arxiv.org/abs/2412.12153",
    per_model={"weight": 1.0},
    ranges={"rank_ratio": (0.0, 1.0)},
)
def cart(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    name: str = "",
    lambda_: float = 2.0,
    rank_ratio: float = 0.12,
    svd_embeddings: bool = False,
) -> torch.Tensor:
    """θ_avg + λ Σ_t lowrank_ρ(τ_t − mean τ): centred, low-rank task vectors around the
    weight average (λ = 2, ρ = 0.12: the authors' 8-task ViT-B/32 configuration)."""
    deltas = [(t - base).mul_(float(w)) for t, w in zip(tensors, weight)]
    mean = torch.stack(deltas).sum(0).mul_(1.0 / len(deltas))
    average = base + mean
    if not is_svd_target(name, base, svd_embeddings):
        return average
    correction = torch.zeros_like(base)
    for delta in deltas:
        correction += low_rank(delta - mean, float(rank_ratio))
    return average.add_(correction, alpha=lambda_)

"""Consensus merging with TALL masks (Wang et al., ICML 2024).

m_t = 1{|τ_t| ≥ λ_t · |θ_MTL − θ_t|}, with θ_MTL = θ_0 + Σ_t τ_t (so θ_MTL − θ_t =
Σ_{s≠t} τ_s); keep the entries where at least ``k`` tasks' masks agree:
θ = θ_0 + λ · (Σ_t w_t τ_t) ⊙ 1{Σ_t m_t ≥ k}.
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method


def tall_masks(deltas: torch.Tensor, mask_lambda: list[float]) -> torch.Tensor:
    """TALL masks for stacked task vectors ``deltas`` (T × ...); returns bool (T × ...)."""
    total = deltas.sum(0)
    lambdas = torch.tensor(mask_lambda, dtype=deltas.dtype).reshape(-1, *([1] * (deltas.dim() - 1)))
    return deltas.abs() >= lambdas * (total - deltas).abs()


@merge_method(
    "consensus",
    pretty_name="Consensus (TALL masks)",
    reference="https://arxiv.org/abs/2405.07813",
    per_model={"weight": 1.0, "mask_lambda": 0.4},
    masks=True,
)
def consensus(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    mask_lambda: list[float],
    k: int = 2,
    lambda_: float = 1.0,
) -> torch.Tensor:
    """Task arithmetic restricted to the entries that at least ``k`` TALL masks keep."""
    deltas = torch.stack([t - base for t in tensors])
    keep = tall_masks(deltas, mask_lambda).sum(0) >= k
    weights = torch.tensor(weight, dtype=deltas.dtype).reshape(-1, *([1] * base.dim()))
    return base + lambda_ * (deltas * weights).sum(0) * keep

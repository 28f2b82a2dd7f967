"""RAM and RAM+ (tensor-local): merging that keeps each model's unique contributions
whole and averages only where models overlap (Reinforced Agent Merging, 2026).

Follows mergekit 0.1.5 (``mergekit/merge_methods/ram.py``). An entry of τ_i = θ_i − θ_0
*contributes* when |τ_i| > ε; where exactly one model contributes its value is kept,
where several do they are averaged (divided by the count):
θ = θ_0 + Σ_i τ_i·1{|τ_i| > ε}·(1{c = 1} + 1{c > 1}/c), c = the number of contributors.
``ramplus_tl`` scales model i's unique entries by λ_i = 1 + r·clamp(ρ_i, 0, α), with
ρ_i = (its shared entries)/(its unique entries) counted in this tensor.
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method

__all__ = ["contributions", "ram", "ramplus_tl"]


def contributions(tensors: list[torch.Tensor], base: torch.Tensor, epsilon: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat task vectors (N × n), who contributes (bool, N × n), the contributor count
    per entry (1 × n) and whether an entry is shared (bool, 1 × n)."""
    task_vectors = torch.stack([x - base for x in tensors]).view(len(tensors), -1)
    contributes = task_vectors.abs() > epsilon
    count = contributes.sum(dim=0, keepdim=True)
    return task_vectors, contributes, count, count > 1


@merge_method(
    "ram",
    pretty_name="Reinforced Agent Merging",
    reference="https://arxiv.org/abs/2601.13572",
    masks=True,
    elementwise=True,
    ranges={"epsilon": (0.0, None)},
)
def ram(tensors: list[torch.Tensor], base: torch.Tensor, *,
        epsilon: float = 1e-5) -> torch.Tensor:
    """Unique contributions kept, overlapping ones averaged (mergekit's ``ram``)."""
    if not tensors:
        return base.clone()
    task_vectors, contributes, count, shared = contributions(tensors, base, epsilon)
    kept = task_vectors * contributes
    merged = (kept * (count == 1) + kept * shared / count.clamp(min=1)).sum(dim=0,
                                                                             keepdim=True)
    return base + merged.reshape_as(base)


@merge_method(
    "ramplus_tl",
    pretty_name="Reinforced Agent Merging Plus (Tensor-Local)",
    reference="https://arxiv.org/abs/2601.13572",
    masks=True,
    ranges={"r": (0.0, None), "alpha": (0.0, None), "epsilon": (0.0, None)},
)
def ramplus_tl(tensors: list[torch.Tensor], base: torch.Tensor, *, r: float = 0.1,
               alpha: float = 0.2, epsilon: float = 1e-5) -> torch.Tensor:
    """RAM with each model's unique entries scaled up by its overlap ratio in the tensor."""
    if not tensors:
        return base.clone()
    task_vectors, contributes, count, shared = contributions(tensors, base, epsilon)
    unique = count == 1
    ratio = (contributes & shared).sum(dim=1) / (contributes & unique).sum(dim=1).clamp(
        min=epsilon)
    scale = 1 + r * ratio.clamp(min=0, max=alpha)
    kept = task_vectors * contributes
    merged = (kept * unique * scale.unsqueeze(-1) + kept * shared / count.clamp(min=1)).sum(
        dim=0, keepdim=True)
    return base + merged.reshape_as(base)

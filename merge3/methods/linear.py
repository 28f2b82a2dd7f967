"""Linear interpolation / model soups (Wortsman et al., ICML 2022)."""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method


@merge_method(
    "linear",
    pretty_name="Linear (model soup)",
    reference="https://arxiv.org/abs/2203.05482",
    base="unused",
    per_model={"weight": 1.0},
    elementwise=True,
)
def linear(
    tensors: list[torch.Tensor], *, weight: list[float], normalize: bool = True
) -> torch.Tensor:
    """θ = Σ w_i θ_i, divided by Σ w_i when ``normalize`` (mergekit's ``linear``)."""
    result = torch.zeros_like(tensors[0])
    for tensor, w in zip(tensors, weight):
        result.add_(tensor, alpha=float(w))
    total = float(sum(weight))
    if normalize and abs(total) > 1e-8:
        result.div_(total)
    return result

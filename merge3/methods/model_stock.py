"""Model Stock (Jang et al., ECCV 2024): interpolate between the base and the average of
the fine-tuned models by the angle between their task vectors.

Follows mergekit 0.1.5 (``mergekit/merge_methods/model_stock.py``): with N ≥ 2 models
and cos θ the mean pairwise cosine of τ_i = θ_i − θ_0 (per tensor, or per row with
``filter_wise``), t = N cos θ / (1 + (N − 1) cos θ) and θ = t·mean_i θ_i + (1 − t)·θ_0;
t = 0 (the base) where the denominator vanishes.
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method

__all__ = ["model_stock_ratio", "model_stock"]


def model_stock_ratio(base: torch.Tensor, tensors: list[torch.Tensor]) -> torch.Tensor:
    """t for the rows of ``base`` (its last axis is one vector) and the given models.

    Shape: ``base``'s leading axes with a trailing 1 (a 1-D ``base``: shape (1,)).
    """
    offsets = [x - base for x in tensors]
    cosines = []
    for i, a in enumerate(offsets):
        for b in offsets[i + 1:]:
            norms = torch.norm(a, dim=-1) * torch.norm(b, dim=-1)
            cosines.append(((a * b).sum(dim=-1) / norms.clamp(min=1e-6)).clamp(-1, 1))
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    count = len(tensors)
    denominator = 1 + (count - 1) * cos
    singular = denominator.abs() < 1e-6
    safe = torch.where(singular, torch.ones_like(denominator), denominator)
    return torch.where(singular, torch.zeros_like(cos), (count * cos) / safe)


@merge_method(
    "model_stock",
    pretty_name="Model Stock",
    reference="https://arxiv.org/abs/2403.19522",
    min_models=2,
)
def model_stock(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    filter_wise: bool = False,
) -> torch.Tensor:
    """θ = t·mean(θ_i) + (1 − t)·θ_0 with t from the task vectors' mean cosine."""
    shape = base.shape
    if filter_wise:
        w0 = base.unsqueeze(0) if base.dim() == 1 else base
        models = [x.unsqueeze(0) for x in tensors] if base.dim() == 1 else list(tensors)
    else:
        w0 = base.reshape(-1)
        models = [x.reshape(-1) for x in tensors]
    t = model_stock_ratio(w0, models)
    average = sum(models) / len(models)
    return (t * average + (1 - t) * w0).reshape(shape)

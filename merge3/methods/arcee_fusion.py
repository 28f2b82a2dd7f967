"""Arcee Fusion: keep a model's changes only where they matter most.

Follows mergekit 0.1.5 (``mergekit/merge_methods/arcee_fusion.py``): the importance of
each entry is |θ_1 − θ_0| times the KL divergence between the softmax (over the last
axis) of the model's and the base's rows; entries whose importance reaches the
outlier fence median + 1.5·IQR of the tensor's importances take the model's value, the
others keep the base's. Quantiles are order statistics of the sorted importances (index
⌊q·(n − 1)⌋); above 10⁶ entries they come, as in mergekit, from 10⁶ entries drawn with
replacement — here from the tensor's seeded generator, so equal in distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from merge3.methods.base import merge_method

__all__ = ["fusion_importance", "fusion_threshold", "arcee_fusion"]

QUANTILE_SAMPLE_SIZE = 1_000_000


def fusion_importance(model: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """|θ_1 − θ_0| · KL(softmax θ_1 ‖ softmax θ_0) per row (last axis); ``base``'s shape."""
    eps = 1e-8
    p = F.softmax(model, dim=-1) + eps
    q = F.softmax(base, dim=-1) + eps
    divergence = torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)
    return (model - base).abs() * divergence


def fusion_threshold(importance: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """median + 1.5·(q3 − q1) of the importances (a 0-d tensor)."""
    flat = importance.reshape(-1)
    if flat.numel() > QUANTILE_SAMPLE_SIZE:
        flat = flat[torch.randint(flat.numel(), (QUANTILE_SAMPLE_SIZE,), generator=generator,
                                  device=flat.device)]
    ordered = torch.sort(flat).values
    positions = (torch.tensor([0.25, 0.5, 0.75]).to(ordered.device)
                 * (ordered.numel() - 1)).long()
    q1, median, q3 = ordered[positions]
    return median + 1.5 * (q3 - q1)


@merge_method(
    "arcee_fusion",
    pretty_name="Arcee Fusion",
    reference="https://arcee.ai",
    min_models=1,
    max_models=1,
    masks=True,
)
def arcee_fusion(tensors: list[torch.Tensor], base: torch.Tensor, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """θ_0 + (θ_1 − θ_0)·1{importance ≥ median + 1.5·IQR}."""
    importance = fusion_importance(tensors[0], base)
    keep = (importance >= fusion_threshold(importance, generator)).float()
    return base + (tensors[0] - base) * keep

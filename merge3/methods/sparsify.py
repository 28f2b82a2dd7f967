"""Sparsification of task vectors: magnitude top-k (TIES), random drop (DARE),
and magnitude with outliers removed (Model Breadcrumbs)."""

from __future__ import annotations

import torch

__all__ = ["magnitude_mask", "outlier_mask", "dare_drop"]


def magnitude_mask(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` fraction of entries with the largest |delta| (at least one).

    Per tensor, as mergekit does; the TIES paper trims over the flattened model.
    """
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta, dtype=torch.bool)
    k = max(1, int(density * delta.numel()))
    flat = delta.abs().reshape(-1)
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    # argsort, not topk: among equal magnitudes (common in bf16) keep the ones mergekit keeps
    keep[torch.argsort(flat, descending=True)[:k]] = True
    return keep.reshape(delta.shape)


def outlier_mask(delta: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    """Model Breadcrumbs (Davari & Belilovsky 2024): drop the top-``gamma`` fraction of
    |delta| as outliers and keep the next ``density`` fraction; as in mergekit, fewer
    outliers are dropped when both fractions do not fit."""
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    n = delta.numel()
    keep_n = int(density * n)
    top_n = int(gamma * n)
    bottom_n = max(0, n - keep_n - top_n)
    order = torch.sort(delta.abs().reshape(-1)).indices  # mergekit's order among ties
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[bottom_n : bottom_n + keep_n]] = True
    return keep.reshape(delta.shape)


def dare_drop(
    delta: torch.Tensor, density: float, generator: torch.Generator | None, rescale: bool = True
) -> torch.Tensor:
    """DARE (Yu et al., ICML 2024): drop each entry with probability p = 1 − density and
    rescale survivors by 1/(1 − p), so the expectation equals ``delta``."""
    if density >= 1:
        return delta
    if density <= 0:
        return torch.zeros_like(delta)
    keep = torch.rand(delta.shape, generator=generator) < density
    dropped = delta * keep
    return dropped / density if rescale else dropped

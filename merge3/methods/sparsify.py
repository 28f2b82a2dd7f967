"""Sparsification of task vectors: magnitude top-k (TIES), random drop (DARE),
and magnitude with outliers removed (Model Breadcrumbs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["magnitude_mask", "outlier_mask", "dare_drop", "dare_trim", "Trim"]


def _kth_smallest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest entry (1-based): a selection, O(n), where a sort is O(n log n)."""
    return torch.kthvalue(flat, k).values


def magnitude_mask(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` fraction of entries with the largest |delta| (at least one).

    Per tensor, as mergekit does; the TIES paper trims over the flattened model. The
    threshold is found by selection, not by sorting. Only when entries tie at the
    threshold and some of them must go is the sort needed: then the kept ones are those
    of mergekit's ``argsort(descending=True)[:k]`` (CPU argsort is not stable, so no
    other rule keeps the same entries; bfloat16 task vectors tie often, float32 rarely).
    """
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta, dtype=torch.bool)
    n = delta.numel()
    k = max(1, int(density * n))
    flat = delta.abs().reshape(-1)
    threshold = _kth_smallest(flat, n - k + 1)  # the k-th largest |delta|
    keep = flat >= threshold
    if int(keep.sum()) != k:  # a tie at the threshold: mergekit's order decides
        keep = torch.zeros(n, dtype=torch.bool, device=delta.device)
        keep[torch.argsort(flat, descending=True)[:k]] = True
    return keep.reshape(delta.shape)


def outlier_mask(delta: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    """Model Breadcrumbs (Davari & Belilovsky 2024): drop the top-``gamma`` fraction of
    |delta| as outliers and keep the next ``density`` fraction; as in mergekit, fewer
    outliers are dropped when both fractions do not fit. The band's two edges come from
    selection; a tie at an edge falls back to mergekit's ascending ``sort`` order."""
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    n = delta.numel()
    keep_n = int(density * n)
    top_n = int(gamma * n)
    bottom_n = max(0, n - keep_n - top_n)
    if keep_n == 0:
        return torch.zeros_like(delta, dtype=torch.bool)
    flat = delta.abs().reshape(-1)
    low = _kth_smallest(flat, bottom_n + 1)  # the first kept, in ascending order
    high = _kth_smallest(flat, bottom_n + keep_n)  # the last kept
    keep = (flat >= low) & (flat <= high)
    if int(keep.sum()) != keep_n:  # a tie at an edge: mergekit's order decides
        order = torch.sort(flat).indices
        keep = torch.zeros(n, dtype=torch.bool, device=delta.device)
        keep[order[bottom_n : bottom_n + keep_n]] = True
    return keep.reshape(delta.shape)


@dataclass(frozen=True, slots=True)
class Trim:
    """Which entries of a task vector survive, and what the survivors are divided by."""

    keep: torch.Tensor | None = None  # bool, like the task vector (None: all entries)
    divisor: float | None = None  # DARE's rescaling 1/(1 − p) as a division by density
    scale: torch.Tensor | None = None  # DELLA's L1 rescaling (a 0-d multiplier)

    def apply(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta`` trimmed in place (the same operations, in the same order, each time)."""
        if self.keep is not None:
            delta.mul_(self.keep)
        if self.divisor is not None:
            delta.div_(self.divisor)
        if self.scale is not None:
            delta.mul_(self.scale)
        return delta


def dare_trim(
    delta: torch.Tensor, density: float, generator: torch.Generator | None, rescale: bool = True
) -> Trim:
    """DARE (Yu et al., ICML 2024): drop each entry with probability p = 1 − density and
    rescale survivors by 1/(1 − p), so the expectation equals ``delta``."""
    if density >= 1:
        return Trim()
    if density <= 0:
        return Trim(torch.zeros_like(delta, dtype=torch.bool))
    keep = torch.rand(delta.shape, generator=generator) < density
    return Trim(keep, density if rescale else None)


def dare_drop(
    delta: torch.Tensor, density: float, generator: torch.Generator | None, rescale: bool = True
) -> torch.Tensor:
    """``delta`` after DARE's drop-and-rescale (a new tensor)."""
    return dare_trim(delta, density, generator, rescale).apply(delta.clone())

"""Sparsification of task vectors: magnitude top-k (TIES), random drop (DARE),
and magnitude with outliers removed (Model Breadcrumbs); per tensor, or (TIES) by one
threshold over the whole model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from merge3.errors import RecipeError
from merge3.methods.model_select import first_pass, kth
from merge3.methods.sort_select import sorted_slice_mask

__all__ = ["magnitude_mask", "outlier_mask", "dare_drop", "dare_trim", "Trim",
           "TRIM_SCOPES", "check_trim_scope", "model_magnitude_thresholds",
           "fusionbench_kth_rank", "ModelTrim", "model_trim"]

TRIM_SCOPES = ("tensor", "model")


def magnitude_mask(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` fraction of entries with the largest |delta| (at least one).

    Per tensor, as mergekit does; the TIES paper trims over the flattened model. Where
    entries tie at the threshold (bfloat16 task vectors tie there almost always), the
    kept ones are those of mergekit's ``argsort(descending=True)[:k]``: CPU argsort is
    not stable, so ``sorted_slice_mask`` replays its partitions instead of sorting.
    """
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta, dtype=torch.bool)
    k = max(1, int(density * delta.numel()))
    return sorted_slice_mask(delta.abs(), 0, k, descending=True, scratch=True)


def outlier_mask(delta: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    """Model Breadcrumbs (Davari & Belilovsky 2024): drop the top-``gamma`` fraction of
    |delta| as outliers and keep the next ``density`` fraction; as in mergekit, fewer
    outliers are dropped when both fractions do not fit. The kept band is the slice
    [n − keep − top, n − top) of mergekit's ascending ``sort`` order, ties included."""
    if density >= 1:
        return torch.ones_like(delta, dtype=torch.bool)
    n = delta.numel()
    keep_n = int(density * n)
    top_n = int(gamma * n)
    bottom_n = max(0, n - keep_n - top_n)
    if keep_n == 0:
        return torch.zeros_like(delta, dtype=torch.bool)
    return sorted_slice_mask(delta.abs(), bottom_n, bottom_n + keep_n, scratch=True)


@dataclass(frozen=True, slots=True)
class Trim:
    """Which entries of a task vector survive, and what the survivors are divided by."""

    keep: torch.Tensor | None = None  # bool, like the task vector (None: all entries)
    divisor: float | None = None  # DARE's rescaling 1/(1 − p) as a division by density
    scale: torch.Tensor | None = None  # DELLA's L1 rescaling (a 0-d multiplier)

    def part(self, part: slice) -> Trim:
        """The trim of the flattened entries ``part`` (for block-wise combination)."""
        keep = None if self.keep is None else self.keep.reshape(-1)[part]
        return Trim(keep, self.divisor, self.scale)

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


def check_trim_scope(trim_scope: Any, method: str) -> str:
    """``trim_scope`` if it is one of TRIM_SCOPES, else a RecipeError naming it."""
    if trim_scope not in TRIM_SCOPES:
        raise RecipeError(f"{method}: trim_scope is {trim_scope!r}.",
                          fix="write trim_scope: tensor (a threshold per tensor, mergekit) or "
                              "trim_scope: model (one per model, FusionBench / the papers).")
    return trim_scope


def fusionbench_kth_rank(size: int, density: float) -> int:
    """The rank (1-based, ascending) of FusionBench's TIES threshold among ``size`` |τ|:
    ``topk_values_mask`` takes ``kthvalue(d - int(d * K))`` and keeps |τ| ≥ it."""
    return size - int(size * density)


@dataclass(frozen=True, slots=True)
class ModelTrim:
    """TIES with ``trim_scope: model``: each model's |τ| threshold (None: density ≥ 1 or
    ≤ 0 keeps all or nothing) and the sign elected where the trimmed sum is exactly 0."""

    thresholds: tuple[float | None, ...]
    zero_sign: int


def model_trim(delta: torch.Tensor, density: float, threshold: float | None) -> Trim:
    """FusionBench's trim of one tensor: keep |τ| ≥ the model-wide threshold (ties at the
    threshold are all kept)."""
    if density >= 1:
        return Trim()
    if density <= 0 or threshold is None:
        return Trim(torch.zeros_like(delta, dtype=torch.bool))
    return Trim(delta.abs() >= threshold)


def model_magnitude_thresholds(stream: Callable[[], Iterator[tuple[str, list[torch.Tensor],
                                                                  torch.Tensor | None]]],
                               setting: Callable[[str], Any], memo: dict) -> Any:
    """TIES's whole-model pass (``trim_scope: model``; None with ``tensor``): per model the
    threshold of FusionBench's ``topk_values_mask`` over the flattened model, and
    ``resolve_sign``'s fallback for a zero sum, the sign of the sum of all elected signs
    (counted on the unweighted trimmed sum, as FusionBench has no weights; − where that is
    0, as its disjoint merge then keeps the negative entries). The first radix pass does
    not depend on the densities and is memoised."""
    if check_trim_scope(setting("trim_scope"), "ties") == "tensor":
        return None
    density = setting("density")

    def rows() -> Iterator[list[torch.Tensor]]:
        for _, tensors, base in stream():
            yield [(x - base).abs() for x in tensors]

    if "first" not in memo:
        memo["first"] = first_pass(rows, len(density))
    first = memo["first"]
    key = tuple(float(d) for d in density)
    if key not in memo:
        ranks = [None if not 0 < d < 1 else fusionbench_kth_rank(first.sizes[i], d)
                 for i, d in enumerate(key)]
        thresholds = kth(rows, first, ranks) if any(r is not None for r in ranks) \
            else [None] * len(key)
        votes = 0
        for _, tensors, base in stream():
            total = torch.zeros_like(base)
            for x, d, threshold in zip(tensors, key, thresholds):
                delta = x - base
                total += model_trim(delta, d, threshold).apply(delta)
            votes += int(torch.sign(total).sum())
        memo[key] = ModelTrim(tuple(thresholds), 1 if votes > 0 else -1)
    return memo[key]

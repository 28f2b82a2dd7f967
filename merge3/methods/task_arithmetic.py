"""The task-arithmetic family: task arithmetic, TIES, DARE and Model Breadcrumbs.

All share one shape (as in mergekit's generalized task arithmetic): sparsify each
task vector τ_i = θ_i − θ_0, weight it, optionally keep only the entries whose sign
agrees with the elected sign (TIES), sum, optionally normalise by the weights that
contributed, and scale by λ: θ = θ_0 + λ·merged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from merge3.errors import MergeError
from merge3.methods.base import merge_method
from merge3.methods.sort_select import one_thread
from merge3.methods.sparsify import (
    Trim,
    check_trim_scope,
    dare_trim,
    magnitude_mask,
    model_magnitude_thresholds,
    model_trim,
    outlier_mask,
)

Sparsifier = Callable[[torch.Tensor, int], Trim]  # (τ_i, i) -> which entries survive


def combine_task_vectors(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    weight: list[float],
    *,
    sparsify: Sparsifier | None = None,
    sign_consensus: bool = False,
    normalize: bool = False,
    lambda_: float = 1.0,
    zero_sign: int = 1,
) -> torch.Tensor:
    """θ_0 + λ · combine_i(w_i · sparsify(θ_i − θ_0)); shapes: every tensor like ``base``.

    The elected sign is that of the summed trimmed mass; where that sum is exactly 0 it is
    + (mergekit), or − with ``zero_sign=-1`` (FusionBench's whole-model majority).

    Working memory: the result, each model's trim (a bool mask) and, while a trim is
    computed, one task vector and its selection's scratch; the rest runs in blocks of
    BLOCK_ELEMENTS (fused, cache-sized), so no other base-sized buffer is ever held.
    """
    if not sign_consensus and sparsify is None:
        # plain task arithmetic: θ_0·(1 − Σc_i) + Σ c_i θ_i with c_i = λ w_i (/ Σw), in
        # 1 + N passes over memory and no N-fold stack of task vectors
        total = float(sum(float(w) for w in weight))
        scale = lambda_ / total if normalize and abs(total) >= 1e-8 else lambda_
        coefficients = [scale * float(w) for w in weight]
        result = base * (1.0 - sum(coefficients))
        for tensor, coefficient in zip(tensors, coefficients):
            result.add_(tensor, alpha=coefficient)
        return result
    # the trims first, one task vector at a time (a trim may need the whole tensor: the
    # magnitude selection does); then everything else, block by block
    trims = [sparsify(torch.sub(tensor, base), i) if sparsify else Trim()
             for i, tensor in enumerate(tensors)]
    weights = [float(w) for w in weight]
    result = torch.empty_like(base)
    flat_base, flat_result = base.reshape(-1), result.reshape(-1)
    flat_tensors = [tensor.reshape(-1) for tensor in tensors]
    combine = _elect_and_combine if sign_consensus else _combine
    with one_thread():  # many cache-sized ops: thread barriers would cost more than they gain
        for start in range(0, flat_base.numel(), BLOCK_ELEMENTS):
            part = slice(start, start + BLOCK_ELEMENTS)
            block_trims = [trim.part(part) for trim in trims]
            merged = combine([x[part] for x in flat_tensors], flat_base[part], weights,
                             block_trims, normalize, zero_sign)
            if lambda_ != 1:
                merged.mul_(lambda_)
            torch.add(merged, flat_base[part], out=flat_result[part])
    return result


BLOCK_ELEMENTS = 1 << 18  # 1 MiB of float32 per buffer: the block's working set stays in cache


def _trimmed(tensor: torch.Tensor, base: torch.Tensor, trim: Trim, weight: float) -> torch.Tensor:
    """w · trim(θ_i − θ_0) of one block (the same operations, in the same order, always)."""
    delta = trim.apply(torch.sub(tensor, base))
    if weight != 1.0:
        delta.mul_(weight)
    return delta


def _combine(tensors: list[torch.Tensor], base: torch.Tensor, weights: list[float],
             trims: list[Trim], normalize: bool, zero_sign: int) -> torch.Tensor:
    """Σ_i w_i · trim(τ_i) of one block, over Σ_i w_i where ``normalize``."""
    merged = torch.zeros_like(base)
    for tensor, trim, weight in zip(tensors, trims, weights):
        merged += _trimmed(tensor, base, trim, weight)
    total = sum(weights)
    if normalize and abs(total) >= 1e-8:
        merged /= total
    return merged


def _elect_and_combine(tensors: list[torch.Tensor], base: torch.Tensor, weights: list[float],
                       trims: list[Trim], normalize: bool, zero_sign: int) -> torch.Tensor:
    """TIES's sign election and disjoint (weighted) mean of one block: the elected sign is
    that of the summed trimmed mass (+ where it is 0 with ``zero_sign=1``); each w_i·τ_i
    counts where it agrees, divided by the weights that agree."""
    deltas = [_trimmed(x, base, trim, w) for x, trim, w in zip(tensors, trims, weights)]
    merged = torch.zeros_like(base)
    for delta in deltas:
        merged.add_(delta)
    positive = merged >= 0 if zero_sign > 0 else merged > 0
    merged.zero_()
    divisor = torch.zeros_like(base)
    for delta, weight in zip(deltas, weights):
        agree = torch.where(positive, delta > 0, delta < 0)
        merged.add_(delta.mul_(agree))
        divisor.add_(agree.to(divisor.dtype), alpha=weight)
    if normalize:
        divisor[divisor == 0] = 1
        merged.div_(divisor)
    return merged


@merge_method(
    "task_arithmetic",
    pretty_name="Task Arithmetic",
    reference="https://arxiv.org/abs/2212.04089",
    per_model={"weight": 1.0},
    elementwise=True,
)
def task_arithmetic(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    normalize: bool = False,
    lambda_: float = 1.0,
) -> torch.Tensor:
    """θ = θ_0 + λ Σ_i w_i τ_i (Ilharco et al., ICLR 2023)."""
    return combine_task_vectors(tensors, base, weight, normalize=normalize, lambda_=lambda_)


def _magnitude_trim(name: str, density: list[float], trim_scope: str,
                    model_stats: Any) -> tuple[Sparsifier, int]:
    """TIES's trim, and the sign where the trimmed sum is 0: per tensor (mergekit: +), or
    by one model-wide threshold with FusionBench's model-wide majority sign."""
    if check_trim_scope(trim_scope, "ties") == "tensor":
        return (lambda d, i: Trim(magnitude_mask(d, density[i]))), 1
    if model_stats is None:
        raise MergeError(f"ties: tensor {name!r}: trim_scope: model needs the whole model's "
                         "task vectors, and this merge sees one tensor (a slice, or "
                         "merge_tensor called directly).",
                         fix="merge whole models (merge3 merge, a search), or use "
                             "trim_scope: tensor.")

    return (lambda d, i: model_trim(d, density[i], model_stats.thresholds[i])), \
        model_stats.zero_sign


@merge_method(
    "ties",
    pretty_name="TIES",
    reference="https://arxiv.org/abs/2306.01708",
    per_model={"weight": 1.0, "density": 1.0},
    masks=True,
    model_pass=model_magnitude_thresholds,
)
def ties(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    density: list[float],
    name: str = "",
    model_stats: Any = None,
    normalize: bool = True,
    lambda_: float = 1.0,
    int8_mask: bool = False,
    trim_scope: str = "tensor",
) -> torch.Tensor:
    """Trim each τ_i to its top-``density`` magnitudes, elect signs, disjoint mean
    (Yadav et al., NeurIPS 2023). ``trim_scope: tensor`` trims per tensor, like mergekit;
    ``model`` keeps |τ_i| ≥ the model-wide threshold of FusionBench's ``topk_values_mask``
    (the paper's rule), and where the trimmed sum is exactly 0 elects FusionBench's
    model-wide majority sign instead of +. ``int8_mask`` is accepted for mergekit recipes
    and changes nothing."""
    sparsify, zero_sign = _magnitude_trim(name, density, trim_scope, model_stats)
    return combine_task_vectors(
        tensors, base, weight, sparsify=sparsify, sign_consensus=True, normalize=normalize,
        lambda_=lambda_, zero_sign=zero_sign,
    )


def _dare(density: list[float], generator: torch.Generator | None, rescale: bool) -> Sparsifier:
    return lambda d, i: dare_trim(d, density[i], generator, rescale)


@merge_method(
    "dare_linear",
    pretty_name="DARE (task arithmetic)",
    reference="https://arxiv.org/abs/2311.03099",
    per_model={"weight": 1.0, "density": 1.0},
    masks=True,
)
def dare_linear(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    density: list[float],
    generator: torch.Generator | None = None,
    normalize: bool = False,
    rescale: bool = True,
    lambda_: float = 1.0,
    int8_mask: bool = False,
) -> torch.Tensor:
    """Drop each τ_i entry with p = 1 − density, rescale by 1/density, task arithmetic
    (Yu et al., ICML 2024). Seeded per tensor by the recipe's ``seed``."""
    return combine_task_vectors(
        tensors, base, weight, sparsify=_dare(density, generator, rescale),
        normalize=normalize, lambda_=lambda_,
    )


@merge_method(
    "dare_ties",
    pretty_name="DARE + TIES",
    reference="https://arxiv.org/abs/2311.03099",
    per_model={"weight": 1.0, "density": 1.0},
    masks=True,
)
def dare_ties(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    density: list[float],
    generator: torch.Generator | None = None,
    normalize: bool = False,
    rescale: bool = True,
    lambda_: float = 1.0,
    int8_mask: bool = False,
) -> torch.Tensor:
    """DARE drop-and-rescale, then TIES sign election and disjoint mean."""
    return combine_task_vectors(
        tensors, base, weight, sparsify=_dare(density, generator, rescale),
        sign_consensus=True, normalize=normalize, lambda_=lambda_,
    )


@merge_method(
    "breadcrumbs",
    pretty_name="Model Breadcrumbs",
    reference="https://arxiv.org/abs/2312.06795",
    per_model={"weight": 1.0, "density": 1.0, "gamma": 0.01},
    masks=True,
)
def breadcrumbs(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    density: list[float],
    gamma: list[float],
    normalize: bool = False,
    lambda_: float = 1.0,
    int8_mask: bool = False,
) -> torch.Tensor:
    """Per tensor, drop the top-γ |τ| outliers and keep the next ``density`` fraction
    (Davari & Belilovsky, ECCV 2024), then task arithmetic."""
    return combine_task_vectors(
        tensors, base, weight,
        sparsify=lambda d, i: Trim(outlier_mask(d, density[i], gamma[i])),
        normalize=normalize, lambda_=lambda_,
    )


@merge_method(
    "breadcrumbs_ties",
    pretty_name="Model Breadcrumbs + TIES",
    reference="https://arxiv.org/abs/2312.06795",
    per_model={"weight": 1.0, "density": 1.0, "gamma": 0.01},
    masks=True,
)
def breadcrumbs_ties(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    density: list[float],
    gamma: list[float],
    normalize: bool = False,
    lambda_: float = 1.0,
    int8_mask: bool = False,
) -> torch.Tensor:
    """Breadcrumbs masks, then TIES sign election and disjoint mean."""
    return combine_task_vectors(
        tensors, base, weight,
        sparsify=lambda d, i: Trim(outlier_mask(d, density[i], gamma[i])),
        sign_consensus=True, normalize=normalize, lambda_=lambda_,
    )

"""WUDI merging: a merged task vector that interferes least with every task's inputs
(Cheng et al., ICML 2025, "Whoever Started the Interference Should End It",
https://arxiv.org/abs/2503.08099; authors' code github.com/nathanielyvo/WUDI-Merging,
``get_redundant_task_vector``; FusionBench ``fusion_bench/method/wudi/wudi.py``).

The paper's insight: the rows of a linear layer's task vector τ_i span (approximately)
the inputs that task sends through the layer, so the interference of a merged τ_m on task
i is measured without data by ‖(τ_m − τ_i) τ_iᵀ‖². Per 2-D weight, WUDI minimises

    L(τ_m) = Σ_i ‖(τ_m − τ_i) τ_iᵀ‖²_F / ‖τ_i‖²_F

by Adam (lr 1e-5, 300 steps, from τ_m = Σ_i τ_i), exactly as the authors' code; every
other tensor gets the mean of the τ_i; θ = θ_0 + λ τ_m (λ = 1 in the paper).

The references differentiate L by autograd through T products of size m×m. Its gradient
is 2 Σ_i (τ_m − τ_i) G_i / c_i with G_i = τ_iᵀ τ_i (n×n) and c_i = ‖τ_i‖², i.e.
2 (τ_m A − B) with A = Σ_i G_i / c_i and B = Σ_i τ_i G_i / c_i, which costs one m×n×n
product per step instead of 2T m×m×n ones (and an n×n matrix instead of T m×m ones: the
authors' formulation does not fit a 30k-row embedding). Where n is much larger than m
(n > 2Tm) the per-task form 2 Σ_i ((τ_m − τ_i) τ_iᵀ) τ_i / c_i is cheaper and used. The
Adam steps are torch.optim.Adam's operations (checked bit for bit in the tests). A
weight w_i scales τ_i first (1: the paper); A does not depend on it. A τ_i that is zero
is left out of L (the references divide by its zero norm).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from merge3.methods.base import merge_method
from merge3.methods.tsv import is_svd_target


def _gradient(merged: torch.Tensor, deltas: list[torch.Tensor], norms: list[float],
              gram: torch.Tensor | None, target: torch.Tensor | None) -> torch.Tensor:
    """∂L/∂τ_m (see the module docstring)."""
    if gram is not None:
        return (merged @ gram - target).mul_(2.0)
    grad = torch.zeros_like(merged)
    for delta, norm in zip(deltas, norms):
        grad.addmm_((merged - delta) @ delta.T, delta, alpha=2.0 / norm)
    return grad


def adam(start: torch.Tensor, gradient: Callable[[torch.Tensor], torch.Tensor],
         iterations: int, lr: float, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8) -> torch.Tensor:
    """``iterations`` steps of Adam from ``start`` (updated in place): the operations of
    ``torch.optim.Adam``'s single-tensor step (weight decay 0), without autograd."""
    beta1, beta2 = betas
    exp_avg, exp_avg_sq = torch.zeros_like(start), torch.zeros_like(start)
    for step in range(1, iterations + 1):
        grad = gradient(start)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1 ** float(step))
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** float(step))).add_(eps)
        start.addcdiv_(exp_avg, denom, value=-step_size)
    return start


def wudi_matrix(deltas: list[torch.Tensor], *, iterations: int = 300,
                lr: float = 1e-5) -> torch.Tensor:
    """WUDI's merged task vector of one m×n weight from the τ_i (each m×n)."""
    merged = torch.stack(deltas).sum(0)
    kept = [(d, float(d.pow(2).sum())) for d in deltas]
    kept = [(d, c) for d, c in kept if c > 0]  # a zero τ_i interferes with nothing
    if not kept or iterations <= 0:
        return merged
    tasks, norms = [d for d, _ in kept], [c for _, c in kept]
    m, n = merged.shape
    gram = target = None
    if n <= 2 * len(tasks) * m:
        gram = torch.zeros(n, n, dtype=merged.dtype, device=merged.device)
        target = torch.zeros_like(merged)
        for delta, norm in zip(tasks, norms):
            g = delta.T @ delta
            gram.add_(g, alpha=1.0 / norm)
            target.addmm_(delta, g, alpha=1.0 / norm)
    return adam(merged, lambda x: _gradient(x, tasks, norms, gram, target), iterations, lr)


@merge_method(
    "wudi",
    pretty_name="WUDI merging",
    reference="https://arxiv.org/abs/2503.08099",
    per_model={"weight": 1.0},
    ranges={"iterations": (0, None), "lr": (0.0, None)},
)
def wudi(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    name: str = "",
    iterations: int = 300,
    lr: float = 1e-5,
    lambda_: float = 1.0,
    svd_embeddings: bool = False,
) -> torch.Tensor:
    """θ_0 + λ·argmin_τ Σ_i ‖(τ − τ_i) τ_iᵀ‖²/‖τ_i‖² per linear weight (Adam, 300 steps,
    lr 1e-5, the authors' settings); the mean τ elsewhere. ``svd_embeddings`` also solves
    embedding matrices (FusionBench solves every 2-D tensor)."""
    deltas = [(t - base).mul_(float(w)) for t, w in zip(tensors, weight)]
    if is_svd_target(name, base, svd_embeddings):
        merged = wudi_matrix(deltas, iterations=int(iterations), lr=float(lr))
    else:
        merged = torch.stack(deltas).sum(0) / len(deltas)
    return base + lambda_ * merged

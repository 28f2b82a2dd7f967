"""Task vectors as accumulated gradients.

Zhou, Crisostomi et al. 2025 ("task vectors as gradients"): with full-batch gradient
descent for one epoch the task vector is exactly ``τ = θ_1 − θ_0 = −η ∇L(θ_0)``; over
more epochs ``τ = −η Σ_k ∇L(θ_k)``, and the first epoch dominates. This module fine-tunes
a model while logging its gradients and reports the cosine between ``τ`` and the
(negated) accumulated gradient, the same for the first epoch's gradient alone, and each
epoch's share of ``τ`` (``⟨θ_e − θ_{e−1}, τ⟩ / ‖τ‖²``; the shares sum to 1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from merge3.errors import Merge3Error

__all__ = ["GradientComparison", "full_batch_gradient", "finetune_with_gradient_log",
           "flat_cosine"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Flat = dict[str, np.ndarray]


@dataclass(frozen=True)
class GradientComparison:
    """What :func:`finetune_with_gradient_log` measured (all tensors float64 numpy)."""

    task_vector: Flat
    accumulated_gradient: Flat  # Σ over all steps of ∇L(θ_k)
    epoch_gradients: list[Flat]  # Σ over the steps of each epoch
    cosine_to_accumulated_gradient: float  # cos(τ, −Σ_k g_k)
    cosine_to_first_epoch_gradient: float  # cos(τ, −Σ_{k ∈ epoch 1} g_k)
    epoch_shares: list[float]  # ⟨θ_e − θ_{e−1}, τ⟩ / ‖τ‖², sums to 1
    per_layer_cosine: dict[str, float]  # cos(τ_W, −Σ_k g_k,W) per tensor

    @property
    def first_epoch_share(self) -> float:
        return self.epoch_shares[0]


def _params(model: nn.Module) -> Flat:
    return {n: p.detach().to(torch.float64).numpy().copy() for n, p in model.named_parameters()}


def _dot(a: Flat, b: Flat) -> float:
    return float(sum(np.vdot(a[k], b[k]) for k in a))


def flat_cosine(a: Flat, b: Flat) -> float:
    """Cosine of two parameter dicts seen as one flat vector."""
    denominator = np.sqrt(_dot(a, a) * _dot(b, b))
    return _dot(a, b) / denominator if denominator > 0 else 0.0


def full_batch_gradient(
    model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``∇L(θ)`` on the whole data set, per parameter (the model is left unchanged)."""
    model.zero_grad()
    loss_fn(model(inputs), targets).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return grads


def finetune_with_gradient_log(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    learning_rate: float,
    epochs: int,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    seed: int = 0,
) -> tuple[nn.Module, GradientComparison]:
    """Fine-tune a copy of ``model`` and compare its task vector with its gradients.

    ``batch_size=None`` is full-batch gradient descent (one step per epoch);
    ``optimizer`` is ``"sgd"`` (plain, so ``τ = −η Σ g`` exactly) or ``"adam"``.
    """
    if optimizer not in ("sgd", "adam"):
        raise Merge3Error(f"Unknown optimizer {optimizer!r}.", fix="use 'sgd' or 'adam'.")
    tuned = copy.deepcopy(model)
    tuned.train()
    params = [p for p in tuned.parameters() if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=learning_rate) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=learning_rate))
    generator = torch.Generator().manual_seed(seed)
    n = len(inputs)
    size = batch_size or n
    start_params = _params(tuned)
    epoch_params = [start_params]
    epoch_gradients: list[Flat] = []
    for _ in range(epochs):
        grad_sum = {k: np.zeros_like(v) for k, v in start_params.items()}
        order = torch.randperm(n, generator=generator) if batch_size else torch.arange(n)
        for begin in range(0, n, size):
            batch = order[begin : begin + size]
            opt.zero_grad()
            loss_fn(tuned(inputs[batch]), targets[batch]).backward()
            for name, p in tuned.named_parameters():
                grad_sum[name] += p.grad.detach().to(torch.float64).numpy()
            opt.step()
        epoch_gradients.append(grad_sum)
        epoch_params.append(_params(tuned))
    tau = {k: epoch_params[-1][k] - start_params[k] for k in start_params}
    accumulated = {k: sum(g[k] for g in epoch_gradients) for k in start_params}
    negated = {k: -v for k, v in accumulated.items()}
    norm2 = _dot(tau, tau)
    shares = [
        _dot({k: after[k] - before[k] for k in tau}, tau) / norm2 if norm2 > 0 else 0.0
        for before, after in zip(epoch_params, epoch_params[1:])
    ]
    comparison = GradientComparison(
        task_vector=tau,
        accumulated_gradient=accumulated,
        epoch_gradients=epoch_gradients,
        cosine_to_accumulated_gradient=flat_cosine(tau, negated),
        cosine_to_first_epoch_gradient=flat_cosine(
            tau, {k: -v for k, v in epoch_gradients[0].items()}),
        epoch_shares=shares,
        per_layer_cosine={k: flat_cosine({k: tau[k]}, {k: negated[k]}) for k in tau},
    )
    return tuned, comparison

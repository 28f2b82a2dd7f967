"""Singular Value Calibration after any merge method: ``svc_<method>`` (e.g. ``svc_ties``).

SVC ("When Shared Knowledge Hurts: Spectral Over-Accumulation in Model Merging", 2026,
https://arxiv.org/abs/2602.05536; FusionBench ``fusion_bench/method/
singular_value_calibration/utils.py``, ``subspace_consistency_spectral_calibration_
accelerated``, FusionBench's default implementation) rescales a merged weight's spectrum
where tasks that share a direction were counted more than once. For a 2-D weight with
merged update Δ = W_merge − W_0 = U diag(σ) Vᵀ and task updates Δ_i = W_i − W_0:

    a_r = u_rᵀ Δ,  a_r^i = u_rᵀ Δ_i                       (responses along u_r)
    s_r^i = ⟨a_r, a_r^i⟩ / max(‖a_r^i‖², 1e-12)           (how much Δ over-counts task i)
    γ_r = K / Σ_i max(α, s_r^i)                           (K tasks; α = 0.1 by default)
    W = W_0 + U diag(γ ⊙ σ) Vᵀ

computed in float64, as FusionBench does. Every 2-D tensor is calibrated (FusionBench:
every 2-D parameter); others keep the inner method's result. The task models are the
experts as given (their recipe weights scale only the inner merge).

``svc_<method>`` takes all of ``<method>``'s parameters plus ``svc_alpha``; one is
registered for every method that needs a base and merges any number of models
(``register_calibrated`` adds them for methods registered later, e.g. plug-ins).
"""

from __future__ import annotations

from typing import Any

import torch

from merge3.errors import RecipeError
from merge3.methods.base import METHODS, MergeMethod

__all__ = ["calibrate", "calibrated", "register_calibrated", "SVC_REFERENCE"]

SVC_REFERENCE = "https://arxiv.org/abs/2602.05536"
DEFAULT_ALPHA = 0.1  # FusionBench's configurations (singular_value_calibration/*.yaml)


def calibrate(merged: torch.Tensor, base: torch.Tensor, tensors: list[torch.Tensor],
              alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """SVC of one merged 2-D weight (float64 inside; the result in ``merged``'s dtype)."""
    work = torch.float64
    base64 = base.to(work)
    delta = merged.to(work) - base64
    tasks = torch.stack([t.to(work) - base64 for t in tensors])  # (K, m, n)
    u, sigma, vh = torch.linalg.svd(delta, full_matrices=False)
    directions = u.T.contiguous()  # (R, m)
    merged_responses = directions @ delta  # (R, n)
    task_responses = torch.einsum("rm,kmn->rkn", directions, tasks)  # (R, K, n)
    norms = (task_responses * task_responses).sum(-1).clamp_min(1e-12)
    coefficients = torch.einsum("rn,rkn->rk", merged_responses, task_responses) / norms
    coefficients = torch.nan_to_num(coefficients, nan=alpha, neginf=alpha)
    factors = tasks.shape[0] / torch.maximum(coefficients,
                                             torch.tensor(alpha, dtype=work)).sum(1)
    out = (u * (factors * sigma).unsqueeze(0)) @ vh + base64
    return out.to(merged.dtype)


def calibrated(inner: MergeMethod) -> MergeMethod:
    """``inner`` followed by SVC on every 2-D tensor, as the method ``svc_<inner>``."""

    def func(tensors: list[torch.Tensor], base: torch.Tensor, *, svc_alpha: float,
             **kwargs: Any) -> torch.Tensor:
        if not svc_alpha > 0:
            raise RecipeError(f"svc_{inner.name}: svc_alpha is {svc_alpha!r}; SVC divides by "
                              "sums of max(svc_alpha, s), which must stay positive.",
                              fix="give svc_alpha > 0 (0.1: FusionBench's default).")
        merged = inner.func(tensors, base, **kwargs)
        if merged.dim() != 2 or torch.equal(merged, base):
            return merged
        return calibrate(merged, base, tensors, float(svc_alpha))

    return MergeMethod(
        name=f"svc_{inner.name}",
        pretty_name=f"{inner.pretty_name} + SVC",
        reference=f"{inner.reference} {SVC_REFERENCE}",
        func=func,
        base=inner.base,
        per_model=dict(inner.per_model),
        global_params={**inner.global_params, "svc_alpha": DEFAULT_ALPHA},
        min_models=inner.min_models,
        max_models=inner.max_models,
        wants_generator=inner.wants_generator,
        wants_name=inner.wants_name,
        masks=inner.masks,
        align=inner.align,
        base_is_input=inner.base_is_input,
        elementwise=False,  # an SVD needs the whole matrix
        precompute=inner.precompute,
        precompute_params=inner.precompute_params,
        model_pass=inner.model_pass,
        ranges={**inner.ranges, "svc_alpha": (0.0, None)},
        description=f"{inner.name}, then Singular Value Calibration of each 2-D weight "
                    "(svc_alpha).",
    )


def register_calibrated() -> list[str]:
    """Register ``svc_<name>`` for every registered method that needs a base and merges any
    number of models (and is not itself calibrated); returns the names added."""
    added = []
    for name in list(METHODS.names()):
        if name.startswith("svc_") or f"svc_{name}" in METHODS:
            continue
        method = METHODS.get(name)
        if method.base != "required" or method.max_models is not None:
            continue  # SVC needs W_0, and calibrates merges of any number of tasks
        METHODS.register(f"svc_{name}", calibrated(method))
        added.append(f"svc_{name}")
    return added

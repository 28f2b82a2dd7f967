"""Iso-C and Iso-CTS: isotropic merging in common and task-specific subspaces
(Marczak et al., ICML 2025; reference code: github.com/danielm1405/iso-merging).

Iso-C flattens the spectrum of the summed task vector Δ = Σ_t τ_t = U diag(s) Vᵀ to
Δ_iso = mean(s)·U Vᵀ. Iso-CTS keeps the top common directions of Δ and adds, per task,
the top directions of τ_t outside that common subspace, orthogonalises the union and
flattens its spectrum. Tensors that are not 2-D get the mean of the τ_t.
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method
from merge3.methods.tsv import (
    all_zero,
    is_svd_target,
    mean_delta,
    orthogonalize,
    svd,
    truncated_svd,
)


def iso_c_matrix(delta_sum: torch.Tensor) -> torch.Tensor:
    """mean(s)·U Vᵀ for Δ = U diag(s) Vᵀ."""
    u, s, vh = svd(delta_sum)
    return s.mean() * (u @ vh)


def iso_cts_ranks(r: int, num_tasks: int, common_fraction: float) -> tuple[int, int]:
    """Common rank k_c and per-task rank k_t with k_c + T·k_t = r, rounded as the authors'
    code (``iso_cts`` in github.com/danielm1405/iso-merging, src/utils/iso.py, and
    FusionBench's copy): k_c0 = ⌊f·r⌋, T·k_t = round((r − k_c0)/T)·T with Python's
    round (half to even), k_c = r − T·k_t. So the task space is rounded to the nearest
    multiple of T, not down: r = 384, f = 0.8, T = 6 gives k_c = 306, k_t = 13.
    Where rounding up would leave k_c < 0 (f near 0), k_t is rounded down instead (the
    reference slices past its bases there)."""
    k_common = int(r * common_fraction)
    k_task = round((r - k_common) / num_tasks)
    if num_tasks * k_task > r:
        k_task = r // num_tasks
    return r - num_tasks * k_task, k_task


def iso_cts_matrix(
    deltas: list[torch.Tensor], common_fraction: float = 0.8
) -> torch.Tensor:
    """Iso-CTS for one matrix."""
    r = min(deltas[0].shape)
    k_common, k_task = iso_cts_ranks(r, len(deltas), common_fraction)
    u_c, s_c, v_c = truncated_svd(sum(deltas), k_common)
    us, ss, vs = [], [], []
    for delta in deltas:
        residual = delta - u_c @ (u_c.T @ delta)  # project out the common subspace
        if k_task:
            u, s, v = truncated_svd(residual, k_task)
            us.append(u), ss.append(s), vs.append(v)
    u_all = orthogonalize(torch.cat([*us, u_c], 1))
    v_all = orthogonalize(torch.cat([*vs, v_c], 1))
    s_all = torch.cat([*ss, s_c])
    return s_all.mean() * (u_all @ v_all.T)


@merge_method(
    "iso_c",
    pretty_name="Iso-C",
    reference="https://arxiv.org/abs/2502.04959",
    per_model={"weight": 1.0},
)
def iso_c(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    name: str = "",
    alpha: float = 1.0,
    svd_embeddings: bool = False,
) -> torch.Tensor:
    """θ_0 + α·mean(s)·U Vᵀ of Σ_t w_t τ_t."""
    if not is_svd_target(name, base, svd_embeddings) or all_zero([t - base for t in tensors]):
        return base + alpha * mean_delta(tensors, base, weight)
    delta_sum = sum(float(w) * (t - base) for t, w in zip(tensors, weight))
    return base + alpha * iso_c_matrix(delta_sum)


@merge_method(
    "iso_cts",
    pretty_name="Iso-CTS",
    reference="https://arxiv.org/abs/2502.04959",
    per_model={"weight": 1.0},
)
def iso_cts(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    name: str = "",
    alpha: float = 1.0,
    common_fraction: float = 0.8,
    svd_embeddings: bool = False,
) -> torch.Tensor:
    """θ_0 + α·Iso-CTS(w_1 τ_1, …, w_T τ_T) with common fraction f (default 0.8)."""
    if (not is_svd_target(name, base, svd_embeddings) or min(base.shape) <= len(tensors)
            or all_zero([t - base for t in tensors])):
        return (
            iso_c(tensors, base, weight=weight, name=name, alpha=alpha,
                  svd_embeddings=svd_embeddings)
        )
    deltas = [float(w) * (t - base) for t, w in zip(tensors, weight)]
    return base + alpha * iso_cts_matrix(deltas, common_fraction)

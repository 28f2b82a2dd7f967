"""The Karcher (Riemannian) mean of models on the unit hypersphere.

Follows mergekit 0.1.5 (``mergekit/merge_methods/karcher.py``): each tensor is one flat
vector; the directions x_i/‖x_i‖ are averaged by fixed-point iteration of the
exponential map (Karcher 1977; Buss & Fillmore 2001), and the result is scaled by the
mean norm. As in mergekit every input counts alike, the base model included when the
recipe names one (mergekit's ``karcher`` treats the base as one more input).
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method

__all__ = ["karcher_mean", "karcher"]


def karcher_mean(tensors: list[torch.Tensor], alphas: list[float], *, max_iter: int = 10,
                 tol: float = 1e-5) -> torch.Tensor:
    """The ``alphas``-weighted Karcher mean of the directions, times Σ α_i ‖x_i‖.

    Inputs whose norm is at most ``tol`` carry no direction and are left out of the
    mean (they still count in the norm). Shape: that of every input.
    """
    if len(tensors) == 1:
        return tensors[0]
    work = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    norms = [torch.linalg.vector_norm(x.to(work)) for x in tensors]
    units = [torch.zeros_like(x) if float(n) == 0.0 else (x / n).to(x.dtype)
             for x, n in zip(tensors, norms)]
    valid = [i for i, n in enumerate(norms) if float(n) > tol]
    if not valid:
        return sum(x * 0 for x in tensors)
    total = sum(alphas[i] for i in valid)
    weights = [alphas[i] / total for i in valid]
    directions = [units[i] for i in valid]

    mean = torch.zeros_like(directions[0])
    for w, u in zip(weights, directions):
        mean += w * u
    mean_norm = torch.linalg.vector_norm(mean.to(work))
    mean = directions[0].clone() if float(mean_norm) < tol else (mean / mean_norm).to(mean.dtype)

    for _ in range(max_iter):
        tangent = torch.zeros_like(mean)
        for w, u in zip(weights, directions):
            cos = torch.clamp(torch.dot(mean.flatten(), u.flatten()), -1.0, 1.0)
            angle = torch.arccos(cos)
            if float(angle) < tol:
                continue
            tangent += w * (angle / torch.sin(angle)) * (u - cos * mean)
        step = torch.linalg.vector_norm(tangent.to(work))
        if float(step) < tol:
            break
        mean = (torch.cos(step) * mean + torch.sin(step) * (tangent / step)).to(mean.dtype)
        length = torch.linalg.vector_norm(mean.to(work))
        if float(length) > tol:
            mean = (mean / length).to(mean.dtype)

    scale = sum(a * n for a, n in zip(alphas, norms))
    return scale * mean


@merge_method(
    "karcher",
    pretty_name="Karcher Mean",
    reference="https://arxiv.org/abs/2603.04972",
    base="optional",
    base_is_input=True,
    ranges={"max_iter": (0, None), "tol": (0.0, None)},
)
def karcher(
    tensors: list[torch.Tensor],
    base: torch.Tensor | None,
    *,
    max_iter: int = 10,
    tol: float = 1e-5,
) -> torch.Tensor:
    """The Karcher mean of all inputs (the base too, where given) with equal weights."""
    inputs = list(tensors) + ([] if base is None else [base])
    if len(inputs) == 1:
        return inputs[0].clone()
    alphas = [1.0 / len(inputs)] * len(inputs)
    return karcher_mean(inputs, alphas, max_iter=int(max_iter), tol=float(tol))

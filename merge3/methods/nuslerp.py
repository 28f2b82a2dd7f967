"""NuSLERP: SLERP between two models with weights, row-wise or flat, optionally around a
base (on the task vectors).

Follows mergekit 0.1.5 (``mergekit/merge_methods/nuslerp.py``): t = w_2/(w_1 + w_2)
(0.5 when the weights sum to ~0). ``nuslerp_flatten`` (default) treats each tensor as one
vector; otherwise every row (the last axis), or with ``nuslerp_row_wise`` every column
(the first axis), is interpolated on its own. Exactly colinear pairs interpolate linearly.
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method

__all__ = ["nuslerp_tensors", "nuslerp"]


def _unit(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    return x / torch.norm(x, dim=-1, keepdim=True).clamp(min=eps)


def nuslerp_tensors(t: float, v0: torch.Tensor, v1: torch.Tensor, *, dim: int = -1,
                    flatten: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """Interpolate from ``v0`` (t=0) to ``v1`` (t=1) along great circles; ``v0``'s shape.

    The vectors are ``dim``'s fibres (all of each tensor with ``flatten``).
    """
    shape = v0.shape
    if flatten:
        v0, v1 = v0.reshape(-1), v1.reshape(-1)
    elif dim != -1:
        v0, v1 = v0.transpose(dim, -1), v1.transpose(dim, -1)
    cos = torch.sum(_unit(v0) * _unit(v1), dim=-1, keepdim=True).clamp(-1, 1)
    colinear = (1 - cos.square()) <= eps**2
    # The spherical branch stays finite where it is not taken.
    angle = torch.acos(torch.where(colinear, 0, cos))
    sin = torch.sin(angle)
    result = (torch.sin((1 - t) * angle) * v0 + torch.sin(t * angle) * v1) / sin
    result = torch.where(colinear, (1 - t) * v0 + t * v1, result)
    if dim != -1 and not flatten:
        result = result.transpose(dim, -1)
    return result.reshape(shape)


@merge_method(
    "nuslerp",
    pretty_name="NuSLERP",
    reference="https://github.com/arcee-ai/mergekit/blob/main/docs/merge_methods.md",
    base="optional",
    per_model={"weight": 1.0},
    min_models=2,
    max_models=2,
)
def nuslerp(
    tensors: list[torch.Tensor],
    base: torch.Tensor | None,
    *,
    weight: list[float],
    nuslerp_row_wise: bool = False,
    nuslerp_flatten: bool = True,
) -> torch.Tensor:
    """SLERP of two models at t = w_2/(w_1 + w_2); of their task vectors given a base."""
    total = float(weight[0]) + float(weight[1])
    t = 0.5 if abs(total) < 1e-6 else float(weight[1]) / total
    dim = 0 if nuslerp_row_wise else -1
    if base is None:
        return nuslerp_tensors(t, tensors[0], tensors[1], dim=dim, flatten=nuslerp_flatten)
    return base + nuslerp_tensors(t, tensors[0] - base, tensors[1] - base, dim=dim,
                                  flatten=nuslerp_flatten)

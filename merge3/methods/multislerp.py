"""Multi-SLERP: barycentric interpolation of any number of models on a hypersphere.

Follows mergekit 0.1.5 (``mergekit/merge_methods/multislerp.py``, after C. Goddard's
"multislerp" note): each tensor (minus the base, where one is given) is one flat vector;
the unit vectors are averaged in the tangent space at their normalised weighted mean,
mapped back by the exponential map and scaled by the weighted mean norm.
"""

from __future__ import annotations

import torch

from merge3.errors import MergeError
from merge3.methods.base import merge_method

__all__ = ["multislerp_tensors", "multislerp"]


def multislerp_tensors(tensors: list[torch.Tensor], weights: list[float],
                       base: torch.Tensor | None = None, *, normalize_weights: bool = True,
                       eps: float = 1e-8, name: str = "") -> torch.Tensor:
    """The spherical barycentre of ``tensors`` (relative to ``base``); their shape."""
    if len(tensors) == 1:
        return tensors[0].clone()
    stacked = torch.stack(tensors)
    if base is not None:
        stacked -= base
    flat = stacked.view(stacked.shape[0], -1)
    w = torch.tensor([float(x) for x in weights], dtype=stacked.dtype, device=stacked.device)
    if normalize_weights:
        w = w / w.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)
    units = flat / (norms + eps)
    mean = (units * w.view(-1, 1)).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if stacked.shape[0] != 2:
            raise MergeError(
                f"multislerp: the weighted mean direction of tensor {name!r} is zero "
                "(antipodal inputs whose weights cancel).",
                fix="change the models' weights.")
        result = (stacked[0] * w[0] + stacked[1] * w[1]).view(stacked.shape[1:])
        return result if base is None else result + base
    mean = mean / mean_norm
    tangents = units - (units * mean).sum(-1, keepdim=True) * mean
    tangent = (tangents * w.view(-1, 1)).sum(0)
    length = torch.norm(tangent) + eps
    result = mean * torch.cos(length) + tangent * (torch.sin(length) / length)
    result = (result * (norms.squeeze(-1) * w).sum()).view(stacked.shape[1:])
    return result if base is None else result + base


@merge_method(
    "multislerp",
    pretty_name="Multi-SLERP",
    reference="https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
    base="optional",
    per_model={"weight": 1.0},
    ranges={"eps": (0.0, None)},
)
def multislerp(
    tensors: list[torch.Tensor],
    base: torch.Tensor | None,
    *,
    weight: list[float],
    name: str = "",
    normalize_weights: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Spherical weighted mean of the models (of their task vectors, given a base)."""
    if normalize_weights and abs(sum(float(w) for w in weight)) < 1e-8:
        raise MergeError(f"multislerp: the model weights of tensor {name!r} sum to 0 and "
                         "normalize_weights divides by that sum.",
                         fix="give weights with a non-zero sum, or set "
                             "normalize_weights: false.")
    return multislerp_tensors(tensors, weight, base, normalize_weights=normalize_weights,
                              eps=float(eps), name=name)

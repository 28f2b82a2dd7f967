"""Spherical linear interpolation between two models, per tensor (Shoemake 1985).

Follows mergekit's ``slerp``: each tensor is treated as one flat vector; when the two
are nearly colinear (|cos| > ``dot_threshold``) it falls back to linear interpolation.
"""

from __future__ import annotations

import math

import torch

from merge3.methods.base import merge_method


def slerp_tensors(
    t: float, v0: torch.Tensor, v1: torch.Tensor, *, dot_threshold: float = 0.9995,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Interpolate from ``v0`` (t=0) to ``v1`` (t=1) along the great circle of their directions."""
    a, b = v0.reshape(-1), v1.reshape(-1)
    norm_a = float(torch.linalg.vector_norm(a))
    norm_b = float(torch.linalg.vector_norm(b))
    norm_a = norm_a if norm_a > eps else 1.0
    norm_b = norm_b if norm_b > eps else 1.0
    dot = float(torch.dot(a / norm_a, b / norm_b).clamp(-1.0, 1.0))
    if abs(dot) > dot_threshold:
        return torch.lerp(v0, v1, t)
    theta = math.acos(dot)
    sin_theta = math.sin(theta)
    return (math.sin((1 - t) * theta) / sin_theta) * v0 + (math.sin(t * theta) / sin_theta) * v1


@merge_method(
    "slerp",
    pretty_name="SLERP",
    reference="https://en.wikipedia.org/wiki/Slerp",
    base="required",
    min_models=1,
    max_models=1,
)
def slerp(tensors: list[torch.Tensor], base: torch.Tensor, *, t: float = 0.5) -> torch.Tensor:
    """Spherical interpolation from the base (t=0) to the other model (t=1)."""
    return slerp_tensors(float(t), base, tensors[0])

"""Apply, compose and draw permutations of a model's hidden units.

A permutation is an index array ``perm`` (int64, shape ``(n,)``): along a permuted axis
the new unit ``i`` is the old unit ``perm[i]`` (``W_new = W.take(perm, axis)``), the
convention of Git Re-Basin (Ainsworth et al., ICLR 2023).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch

from merge3.alignment.spec import PermutationSpec

__all__ = [
    "Permutations",
    "apply_permutations",
    "identity_permutations",
    "random_permutations",
    "invert_permutation",
    "permutation_matrix",
]

Permutations = dict[str, np.ndarray]
Tensor = TypeVar("Tensor", torch.Tensor, np.ndarray)


def _take(value: Tensor, perm: np.ndarray, axis: int) -> Tensor:
    if isinstance(value, torch.Tensor):
        return value.index_select(axis, torch.as_tensor(perm, device=value.device))
    return np.take(value, perm, axis=axis)


def apply_permutations(
    state_dict: Mapping[str, Tensor], spec: PermutationSpec, perms: Mapping[str, np.ndarray]
) -> dict[str, Tensor]:
    """Return a copy of ``state_dict`` with every spec'd axis permuted by ``perms``.

    Tensors outside the spec are returned as they are (same objects).
    """
    out = dict(state_dict)
    for name, axis_perms in spec.axes.items():
        value = state_dict[name]
        for axis, perm_id in enumerate(axis_perms):
            if perm_id is not None:
                value = _take(value, perms[perm_id], axis)
        out[name] = value
    return out


def identity_permutations(sizes: Mapping[str, int]) -> Permutations:
    return {p: np.arange(n) for p, n in sizes.items()}


def random_permutations(sizes: Mapping[str, int], seed: int = 0) -> Permutations:
    rng = np.random.default_rng(seed)
    return {p: rng.permutation(n) for p, n in sizes.items()}


def invert_permutation(perm: np.ndarray) -> np.ndarray:
    return np.argsort(perm)


def permutation_matrix(perm: np.ndarray) -> np.ndarray:
    """Integer matrix ``P`` with ``P @ x == x[perm]`` for a vector ``x``."""
    matrix = np.zeros((len(perm), len(perm)), dtype=np.int64)
    matrix[np.arange(len(perm)), perm] = 1
    return matrix

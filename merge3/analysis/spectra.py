"""Per-layer singular spectra and effective rank of task vectors.

Effective rank after Roy & Vetterli, "The effective rank: a measure of effective
dimensionality", EUSIPCO 2007: with ``p_k = s_k / Σ_j s_j``, ``erank = exp(−Σ_k p_k log p_k)``
(between 1 and the rank). Used on task vectors by Gargiulo et al. ("Task Singular
Vectors", CVPR 2025) to show that per-layer task matrices are low-rank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["LayerSpectrum", "as_matrix", "task_vector", "singular_spectrum", "effective_rank",
           "layer_spectra"]


@dataclass(frozen=True, slots=True)
class LayerSpectrum:
    """Singular values (descending, float64) of one layer's matrix and their summaries."""

    name: str
    shape: tuple[int, ...]
    singular_values: np.ndarray
    effective_rank: float

    @property
    def energy_rank(self) -> int:
        """Smallest k whose top-k singular values hold 90% of the squared norm."""
        energy = np.cumsum(self.singular_values**2)
        return int(np.searchsorted(energy, 0.9 * energy[-1]) + 1) if energy[-1] > 0 else 0


def as_matrix(value: Any) -> np.ndarray:
    """A tensor or array as a float64 numpy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def task_vector(finetuned: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``τ = θ_t − θ_0`` for every floating tensor of the base (float64)."""
    out = {}
    for name, value in base.items():
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            continue
        out[name] = as_matrix(finetuned[name]) - as_matrix(value)
    return out


def singular_spectrum(matrix: Any) -> np.ndarray:
    """Singular values of a 2-D matrix, descending."""
    return np.linalg.svd(as_matrix(matrix), compute_uv=False)


def effective_rank(singular_values: np.ndarray, eps: float = 1e-12) -> float:
    """Roy & Vetterli effective rank ``exp(H(s / ‖s‖₁))``; 0 for a zero matrix."""
    s = np.asarray(singular_values, dtype=np.float64)
    total = s.sum()
    if total <= eps:
        return 0.0
    p = s[s > eps * total] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def layer_spectra(task_vector: Mapping[str, Any]) -> dict[str, LayerSpectrum]:
    """Spectrum and effective rank of every 2-D tensor of a task vector."""
    out = {}
    for name, value in task_vector.items():
        matrix = as_matrix(value)
        if matrix.ndim != 2:
            continue
        s = singular_spectrum(matrix)
        out[name] = LayerSpectrum(name, matrix.shape, s, effective_rank(s))
    return out

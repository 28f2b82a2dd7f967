"""Singular Task Interference (STI) between task vectors.

Gargiulo, Crisostomi, Bucarelli, Scardapane, Silvestri & Rodolà, "Task Singular Vectors:
Reducing Task Interference in Model Merging", CVPR 2025 (repo
AntoAndGar/task_singular_vectors). For a layer, each task's matrix ``Δ_t`` is truncated
to its top-k singular triplets; the factors are concatenated across tasks into
``U`` (m × Tk), ``s`` (Tk) and ``V`` (n × Tk), and

    STI = ‖(UᵀU − I) diag(s) (VᵀV − I)‖₁   (entrywise L1 norm),

zero when the tasks' singular vectors are mutually orthogonal. TSV-M replaces ``U`` and
``V`` by their nearest orthonormal matrices (orthogonal Procrustes) before summing, which
removes this interference: ``orthogonalized=True`` measures it after that step. The SVD
and Procrustes arithmetic is ``merge3.methods.tsv``'s, in float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from merge3.analysis.spectra import as_matrix
from merge3.methods import tsv

__all__ = ["singular_task_interference", "truncated_factors", "orthogonalize",
           "layer_interference", "pairwise_interference"]


def _torch(value: Any) -> torch.Tensor:
    return torch.from_numpy(as_matrix(value))


def singular_task_interference(U: Any, s: Any, V: Any) -> float:
    """STI of concatenated factors: U (m × K), s (K,), V (n × K) (float64)."""
    return tsv.singular_task_interference(_torch(U), _torch(s), _torch(V))


def truncated_factors(matrix: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k singular triplets of a 2-D matrix: U (m × k), s (k,), V (n × k) (float64)."""
    u, s, v = tsv.truncated_svd(_torch(matrix), k)
    return u.numpy(), s.numpy(), v.numpy()


def orthogonalize(matrix: Any) -> np.ndarray:
    """Nearest matrix with orthonormal columns (orthogonal Procrustes): M = PΣQᵀ → PQᵀ."""
    return tsv.orthogonalize(_torch(matrix)).numpy()


def _concatenated(matrices: Sequence[Any], k: int | None,
                  orthogonalized: bool = False) -> tuple[np.ndarray, ...]:
    rank = min(as_matrix(matrices[0]).shape)
    k = k if k is not None else max(1, rank // len(matrices))  # TSV-C default ⌊r/T⌋
    factors = [truncated_factors(m, k) for m in matrices]
    U = np.concatenate([f[0] for f in factors], axis=1)
    s = np.concatenate([f[1] for f in factors])
    V = np.concatenate([f[2] for f in factors], axis=1)
    if orthogonalized:
        U, V = orthogonalize(U), orthogonalize(V)
    return U, s, V


def layer_interference(
    task_vectors: Sequence[Mapping[str, Any]], k: int | None = None, *,
    orthogonalized: bool = False,
) -> dict[str, float]:
    """STI of all tasks together, per 2-D layer (k triplets per task, default ⌊r/T⌋);
    ``orthogonalized=True``: after TSV-M's orthogonalisation of the concatenated factors."""
    out = {}
    for name, value in task_vectors[0].items():
        if as_matrix(value).ndim == 2:
            factors = _concatenated([tv[name] for tv in task_vectors], k, orthogonalized)
            out[name] = singular_task_interference(*factors)
    return out


def pairwise_interference(
    task_vectors: Sequence[Mapping[str, Any]], layer: str, k: int | None = None
) -> np.ndarray:
    """T × T matrix of the STI of each pair of tasks at one layer (diagonal: 0)."""
    n = len(task_vectors)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            pair = [task_vectors[i][layer], task_vectors[j][layer]]
            out[i, j] = out[j, i] = singular_task_interference(*_concatenated(pair, k))
    return out

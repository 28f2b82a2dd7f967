"""Task Singular Vectors: TSV-C compression and TSV-M merging (Gargiulo et al., CVPR 2025;
reference code: github.com/AntoAndGar/task_singular_vectors).

For a 2-D weight, each task's τ_t = U_t diag(s_t) V_tᵀ keeps its top-k singular
triplets. TSV-M concatenates the triplets of all tasks, removes their interference by
orthogonalising U and V (Procrustes: the nearest orthonormal matrix to M = PΣQᵀ is PQᵀ)
and rebuilds Δ = U⊥ diag(s) V⊥ᵀ; θ = θ_0 + α Δ. Tensors that are not 2-D (biases,
norms) and, unless ``svd_embeddings``, embedding matrices get the mean of the τ_t.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from merge3.errors import CheckpointError
from merge3.methods.base import merge_method

__all__ = [
    "svd",
    "truncated_svd",
    "orthogonalize",
    "task_singular_vectors",
    "singular_task_interference",
    "tsv_merge_matrix",
    "LowRank",
    "TSVFactors",
    "orthogonal_factors",
    "tsv_factors",
    "is_svd_target",
    "compress_task_vector",
    "save_factors",
    "load_factors",
    "storage_ratio",
]

_EMBEDDING_HINTS = ("embed", "wte", "wpe", "lm_head", "shared", "word_embeddings")


def is_svd_target(name: str, tensor: torch.Tensor, svd_embeddings: bool = False) -> bool:
    """2-D weight matrices get the SVD treatment; embeddings only when asked."""
    if tensor.dim() != 2 or min(tensor.shape) < 2:
        return False
    return svd_embeddings or not any(h in name.lower() for h in _EMBEDDING_HINTS)


def svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``U, s, Vᴴ``, retried in float64 when float32 LAPACK does not converge.

    On CPU, float32 ``gesdd`` can fail on a well-posed input whose singular values are
    clustered (measured: the concatenated bases Iso-CTS orthogonalises, on one thread);
    the float64 routine converges on it, and the factors come back in the input's dtype.
    """
    try:
        return torch.linalg.svd(matrix, full_matrices=False)
    except torch.linalg.LinAlgError:
        if matrix.dtype == torch.float64:
            raise
        u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
        return u.to(matrix.dtype), s.to(matrix.dtype), vh.to(matrix.dtype)


def truncated_svd(matrix: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k singular triplets: U (m×k), s (k,), V (n×k)."""
    u, s, vh = svd(matrix)
    return u[:, :k], s[:k], vh[:k].T


def orthogonalize(matrix: torch.Tensor) -> torch.Tensor:
    """Nearest matrix with orthonormal columns (orthogonal Procrustes): M = PΣQᵀ -> PQᵀ."""
    p, _, qh = svd(matrix)
    return p @ qh


def rank_per_task(shape: tuple[int, ...], num_tasks: int, k_fraction: float | None) -> int:
    r = min(shape)
    if k_fraction is None:
        return max(1, r // num_tasks)
    return max(1, min(r, int(k_fraction * r)))


@dataclass(frozen=True, slots=True)
class LowRank:
    """Top-k singular triplets of one task's matrix: τ ≈ U diag(s) Vᵀ."""

    u: torch.Tensor  # (m, k), orthonormal columns
    s: torch.Tensor  # (k,), descending
    v: torch.Tensor  # (n, k), orthonormal columns


@dataclass(frozen=True, slots=True)
class TSVFactors:
    """TSV-M's genome-independent part for one matrix: the orthogonalised concatenated
    bases U⊥ (m×Tk), V⊥ (n×Tk) and each task's singular values s_t (k,)."""

    u_perp: torch.Tensor
    singular: tuple[torch.Tensor, ...]
    v_perp: torch.Tensor

    def delta(self, weights: Sequence[float] | None = None) -> torch.Tensor:
        """U⊥ diag(w_1 s_1, …, w_T s_T) V⊥ᵀ: a weight only scales its task's block of
        singular values, so every weighting reuses the same bases."""
        scaled = torch.cat([s * (1.0 if weights is None else float(w))
                            for s, w in zip(self.singular, weights or [1.0] * len(self.singular))])
        return (self.u_perp * scaled) @ self.v_perp.T


def orthogonal_factors(factors: Sequence[LowRank]) -> TSVFactors:
    """Concatenate tasks' triplets and orthogonalise U and V (Procrustes)."""
    return TSVFactors(orthogonalize(torch.cat([f.u for f in factors], 1)),
                      tuple(f.s for f in factors),
                      orthogonalize(torch.cat([f.v for f in factors], 1)))


def task_singular_vectors(
    deltas: list[torch.Tensor], k: int, weights: list[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate each task's top-k triplets: U_cat (m×Tk), s_cat (Tk,), V_cat (n×Tk).

    ``weights`` scale each task's block of singular values (the search's per-task genes).
    """
    us, ss, vs = [], [], []
    for i, delta in enumerate(deltas):
        u, s, v = truncated_svd(delta, k)
        us.append(u)
        ss.append(s * (1.0 if weights is None else float(weights[i])))
        vs.append(v)
    return torch.cat(us, 1), torch.cat(ss), torch.cat(vs, 1)


def singular_task_interference(u: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> float:
    """STI = ‖(UᵀU − I) diag(s) (VᵀV − I)‖₁ (entrywise L1) on concatenated task factors."""
    eye = torch.eye(u.shape[1], dtype=u.dtype)
    return float(((u.T @ u - eye) @ torch.diag(s) @ (v.T @ v - eye)).abs().sum())


def tsv_merge_matrix(
    deltas: list[torch.Tensor], k: int, weights: list[float] | None = None
) -> torch.Tensor:
    """TSV-M for one matrix: Δ = U⊥ diag(w·s) V⊥ᵀ."""
    return orthogonal_factors([LowRank(*truncated_svd(d, k)) for d in deltas]).delta(weights)


def all_zero(deltas: list[torch.Tensor]) -> bool:
    """No task moved this tensor (e.g. a pooler no loss trains): nothing to decompose, and
    an SVD of zeros may fail to converge."""
    return all(not bool(d.any()) for d in deltas)


def mean_delta(tensors: list[torch.Tensor], base: torch.Tensor, weight: list[float]):
    """(1/T) Σ_t w_t τ_t: what the SVD methods give tensors they do not decompose."""
    return sum(float(w) * (t - base) for t, w in zip(tensors, weight)) / len(tensors)


def tsv_factors(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    name: str = "",
    k_fraction: float | None = None,
    svd_embeddings: bool = False,
) -> TSVFactors | None:
    """TSV-M's genome-independent part of one tensor (None: not decomposed)."""
    deltas = [t - base for t in tensors]
    if not is_svd_target(name, base, svd_embeddings) or all_zero(deltas):
        return None
    k = rank_per_task(tuple(base.shape), len(tensors), k_fraction)
    return orthogonal_factors([LowRank(*truncated_svd(d, k)) for d in deltas])


@merge_method(
    "tsv_m",
    pretty_name="TSV-Merge",
    reference="https://arxiv.org/abs/2412.00081",
    per_model={"weight": 1.0},
    precompute=tsv_factors,
)
def tsv_m(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    precomputed: TSVFactors | None,
    alpha: float = 1.0,
    k_fraction: float | None = None,
    svd_embeddings: bool = False,
) -> torch.Tensor:
    """θ_0 + α·TSV-M(τ_1..τ_T); k = ⌊r/T⌋ per task unless ``k_fraction`` of r is given."""
    if precomputed is None:
        return base + alpha * mean_delta(tensors, base, weight)
    return base + alpha * precomputed.delta(weight)


@merge_method(
    "tsv_c",
    pretty_name="TSV-Compress",
    reference="https://arxiv.org/abs/2412.00081",
    per_model={"weight": 1.0},
)
def tsv_c(
    tensors: list[torch.Tensor],
    base: torch.Tensor,
    *,
    weight: list[float],
    name: str = "",
    alpha: float = 1.0,
    k_fraction: float | None = None,
    svd_embeddings: bool = False,
) -> torch.Tensor:
    """θ_0 + α Σ_t w_t·lowrank_k(τ_t): each task vector compressed to k = ⌊r/T⌋ triplets.

    With one model this rebuilds the compressed expert; with several it is task
    arithmetic over the compressed vectors. Other tensors are kept exactly.
    """
    deltas = [t - base for t in tensors]
    if not is_svd_target(name, base, svd_embeddings) or all_zero(deltas):
        return base + alpha * sum(float(w) * d for d, w in zip(deltas, weight))
    k = rank_per_task(tuple(base.shape), len(tensors), k_fraction)
    merged = torch.zeros_like(base)
    for delta, w in zip(deltas, weight):
        u, s, v = truncated_svd(delta, k)
        merged += float(w) * (u * s) @ v.T
    return base + alpha * merged


# -- TSV-C storage: keep the factors, rebuild the task vector later ---------------------------
def compress_task_vector(
    task_vector: Mapping[str, torch.Tensor],
    *,
    k_fraction: float,
    svd_embeddings: bool = False,
) -> dict[str, torch.Tensor]:
    """Factors of a task vector: ``name.U``/``name.s``/``name.V`` for 2-D weights, the
    tensor itself (``name``) otherwise."""
    factors: dict[str, torch.Tensor] = {}
    for name, delta in task_vector.items():
        if is_svd_target(name, delta, svd_embeddings):
            k = max(1, int(k_fraction * min(delta.shape)))
            u, s, v = truncated_svd(delta.float(), k)
            factors[f"{name}.U"], factors[f"{name}.s"], factors[f"{name}.V"] = u, s, v
        else:
            factors[name] = delta
    return factors


def storage_ratio(
    factors: Mapping[str, torch.Tensor], task_vector: Mapping[str, torch.Tensor]
) -> float:
    """Stored numbers ÷ numbers of the full task vector (k(m+n+1)/(mn) per matrix)."""
    stored = sum(t.numel() for t in factors.values())
    full = sum(t.numel() for t in task_vector.values())
    return stored / full


def save_factors(factors: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """Write TSV-C factors to one safetensors file (atomically)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    save_file({k: v.contiguous() for k, v in factors.items()}, str(tmp),
              metadata={"format": "merge3-tsv-c-v1"})
    tmp.replace(path)
    return path


def load_factors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read TSV-C factors and rebuild the (low-rank) task vector ``{name: U diag(s) Vᵀ}``."""
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("format") != "merge3-tsv-c-v1":
            raise CheckpointError(
                f"{path} is not a merge3 TSV-C factor file.",
                fix="create it with merge3.methods.tsv.save_factors.",
            )
        stored = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (not a dict)
    rebuilt: dict[str, torch.Tensor] = {}
    for key, tensor in stored.items():
        stem, _, part = key.rpartition(".")
        if part in ("U", "s", "V") and f"{stem}.U" in stored and f"{stem}.V" in stored:
            if part == "U":
                rebuilt[stem] = (tensor * stored[f"{stem}.s"]) @ stored[f"{stem}.V"].T
        else:
            rebuilt[key] = tensor
    return rebuilt

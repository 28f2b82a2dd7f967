"""Low-rank experts: each 2-D task vector held as rank-r factors (TSV-C compression).

TSV-C (Gargiulo et al., "Task Singular Vectors: Reducing Task Interference in Model
Merging", CVPR 2025; reference code github.com/AntoAndGar/task_singular_vectors) keeps
a task's layer task vector τ = θ_t − θ_0 (m × n) as its top-r singular triplets,
τ ≈ U diag(s) Vᵀ: r(m + n + 1) numbers instead of mn. A search worker holding experts
this way needs no expert file and a fraction of the memory of a dense expert, at the
cost of the discarded singular values (the storage/accuracy trade-off of the thesis;
measured in benchmarks/scale/lowrank.md).

:class:`LowRankExpert` is a :class:`merge3.executor.TensorSource`: ``get(name)`` returns
θ_0 + U diag(s) Vᵀ, rebuilt in float32 from the base's tensor and cast to the expert's
dtype, so every merge method reads it as it reads a checkpoint. Tensors that are not
2-D float matrices (norms, biases, integer buffers) are held as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from merge3.errors import RecipeError
from merge3.executor import TensorSource
from merge3.methods.tsv import svd

__all__ = ["FACTOR_DTYPES", "LowRankFactors", "LowRankExpert", "factorize", "lowrank_bytes",
           "write_expert"]

FACTOR_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True, slots=True)
class LowRankFactors:
    """τ ≈ (u · s) @ vh: u (m × r), s (r,), vh (r × n), in the storage dtype."""

    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.u, self.s, self.vh))

    def delta(self) -> torch.Tensor:
        """The rank-r task vector, in float32."""
        return (self.u.float() * self.s.float()) @ self.vh.float()


def factorize(task_vector: torch.Tensor, rank: int,
              dtype: torch.dtype = torch.float32) -> LowRankFactors:
    """The top-``rank`` singular triplets of a 2-D ``task_vector`` (exact thin SVD in float32,
    float64 where float32 LAPACK does not converge); ``rank`` above min(m, n) keeps all."""
    if task_vector.dim() != 2:
        raise ValueError(f"factorize takes a 2-D task vector, got shape {tuple(task_vector.shape)}")
    u, s, vh = svd(task_vector.float())
    r = min(rank, s.numel())
    return LowRankFactors(u[:, :r].to(dtype).contiguous(), s[:r].to(dtype).contiguous(),
                          vh[:r].to(dtype).contiguous())


def lowrank_bytes(shape: tuple[int, ...], rank: int, factor_bytes: int) -> int:
    """Bytes of one matrix's rank-``rank`` factors (the planner's count, no tensor needed)."""
    m, n = shape
    r = min(rank, m, n)
    return r * (m + n + 1) * factor_bytes


def _factorable(tensor: torch.Tensor) -> bool:
    return tensor.dim() == 2 and tensor.is_floating_point() and min(tensor.shape) > 1


class LowRankExpert:
    """An expert held as its base plus low-rank task vectors (a ``TensorSource``).

    ``base`` and ``expert``: tensor sources of the same names and shapes (checkpoints).
    Built once (one SVD per 2-D tensor); afterwards only ``base`` is read, and ``expert``
    may be closed. ``dtype``: the factors' storage dtype (``float32`` or ``bfloat16``).
    """

    def __init__(self, base: TensorSource, expert: TensorSource, rank: int, *,
                 dtype: str = "float32", label: str = "expert",
                 names: Iterable[str] | None = None) -> None:
        if rank < 1:
            raise RecipeError(f"{label}: low-rank storage needs rank >= 1, got {rank}.",
                              fix="set expert_storage.rank to a positive integer (e.g. 16).")
        if dtype not in FACTOR_DTYPES:
            raise RecipeError(f"{label}: unknown factor dtype {dtype!r}.",
                              fix=f"use one of: {', '.join(FACTOR_DTYPES)}.")
        self.base = base
        self.rank = rank
        self.label = label
        self._names = list(names if names is not None else expert.names())  # type: ignore[attr-defined]
        self._factors: dict[str, LowRankFactors] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._kept: dict[str, torch.Tensor] = {}
        factor_dtype = FACTOR_DTYPES[dtype]
        for name in self._names:
            tensor = expert.get(name)
            if _factorable(tensor):
                task_vector = tensor.float() - base.get(name).float()
                self._factors[name] = factorize(task_vector, rank, factor_dtype)
                self._dtypes[name] = tensor.dtype
            else:
                self._kept[name] = tensor.clone()  # small: norms, biases, buffers

    def names(self) -> list[str]:
        return list(self._names)

    def get(self, name: str) -> torch.Tensor:
        factors = self._factors.get(name)
        if factors is None:
            if name not in self._kept:
                raise KeyError(f"{self.label} has no tensor {name!r}")
            return self._kept[name]
        rebuilt = self.base.get(name).float() + factors.delta()
        return rebuilt.to(self._dtypes[name])

    @property
    def nbytes(self) -> int:
        """What this expert holds in memory: the factors and the tensors kept as they are."""
        kept = sum(t.numel() * t.element_size() for t in self._kept.values())
        return kept + sum(f.nbytes for f in self._factors.values())

    def factors(self, name: str) -> LowRankFactors | None:
        return self._factors.get(name)


def write_expert(expert: LowRankExpert, out_dir: str | os.PathLike[str], *,
                 copy_from: str | os.PathLike[str] | None = None,
                 overwrite: bool = False) -> Path:
    """Write the reconstructed expert (θ_0 + U diag(s) Vᵀ) as an ordinary checkpoint, so
    ``merge3 merge`` and ``merge3 eval`` can use the very expert a low-rank worker holds."""
    from merge3.checkpoints import CheckpointWriter

    with CheckpointWriter(out_dir, overwrite=overwrite) as writer:
        for name in expert.names():
            writer.add(name, expert.get(name).contiguous())
        return writer.finish(copy_from=Path(copy_from) if copy_from else None)

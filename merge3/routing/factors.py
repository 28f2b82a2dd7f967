"""The offline half of MASS: every expert's task vector kept as TSV-C factors, and the
TSV-M merge of any subset of experts rebuilt from them.

Crisostomi et al. 2025, "MASS: MoErging through Adaptive Subspace Selection" (reference
code: github.com/crisostomi/mass, ``compress_tv`` / ``sum_svd``), on top of Gargiulo et
al., CVPR 2025 (Task Singular Vectors). Each 2-D weight's τ_t keeps its top k = ⌊r/T⌋
singular triplets (T = all experts, so a subset is merged from the same factors); other
floating tensors keep their full τ_t and are averaged over the selected experts, as
merge3's ``tsv_m`` does. Tensors no expert moved are θ_0's and are not stored. The
factor and merge arithmetic is ``merge3.methods.tsv``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

from merge3.methods.tsv import (
    LowRank,
    all_zero,
    is_svd_target,
    orthogonal_factors,
    rank_per_task,
    truncated_svd,
)
from merge3.registry import did_you_mean
from merge3.routing.errors import RoutingError

__all__ = ["LowRank", "TaskFactors"]


class TaskFactors:
    """TSV-C factors of T experts over one base; merges any subset by TSV-M.

    ``low_rank[name][i]`` are task i's factors of 2-D weight ``name``; ``dense[name][i]``
    is task i's full τ of any other floating tensor.
    """

    def __init__(self, tasks: Sequence[str], base: Mapping[str, torch.Tensor],
                 low_rank: Mapping[str, list[LowRank]],
                 dense: Mapping[str, list[torch.Tensor]]) -> None:
        self.tasks = tuple(tasks)
        self.base = dict(base)
        self.low_rank = dict(low_rank)
        self.dense = dict(dense)

    @classmethod
    def from_states(
        cls,
        base: Mapping[str, torch.Tensor],
        experts: Mapping[str, Mapping[str, torch.Tensor]],
        *,
        k_fraction: float | None = None,
        svd_embeddings: bool = False,
    ) -> TaskFactors:
        """Factor each expert's τ_t = θ_t − θ_0 (state dicts with Hugging Face names).

        k = ⌊r/T⌋ triplets per task and matrix (r = min(m, n)), or ``k_fraction``·r.
        """
        if not experts:
            raise RoutingError("MASS needs at least one expert; none was given.",
                               fix="pass the fine-tuned experts, e.g. --route-experts A,B.")
        tasks = list(experts)
        for task, state in experts.items():
            _check_expert(task, state, base)
        low_rank: dict[str, list[LowRank]] = {}
        dense: dict[str, list[torch.Tensor]] = {}
        for name, base_tensor in base.items():
            if not base_tensor.is_floating_point():
                continue  # integer / bool buffers are never merged
            theta0 = base_tensor.float()
            deltas = [experts[t][name].float() - theta0 for t in tasks]
            if all_zero(deltas):
                continue  # e.g. BERT's pooler under mean pooling: θ_0's, nothing to store
            if is_svd_target(name, base_tensor, svd_embeddings):
                k = rank_per_task(tuple(base_tensor.shape), len(tasks), k_fraction)
                low_rank[name] = [_factor(delta, k) for delta in deltas]
            else:
                dense[name] = deltas
        return cls(tasks, base, low_rank, dense)

    # -- what is stored -----------------------------------------------------------------
    @property
    def changed(self) -> list[str]:
        """Names of the tensors some expert moved (the others are always θ_0's)."""
        return [*self.low_rank, *self.dense]

    def index(self, task: str) -> int:
        if task not in self.tasks:
            raise RoutingError(
                f"No expert for task {task!r}.{did_you_mean(task, list(self.tasks))}",
                fix=f"experts: {', '.join(self.tasks)}.")
        return self.tasks.index(task)

    def basis(self, matrix: str) -> torch.Tensor:
        """(T, k, n): each task's right singular vectors of ``matrix``, as rows (V_tᵀ)."""
        if matrix not in self.low_rank:
            raise RoutingError(
                f"Tensor {matrix!r} has no TSV factors.{did_you_mean(matrix, list(self.low_rank))}",
                fix="route on a 2-D weight the experts changed, e.g. "
                    "encoder.layer.4.intermediate.dense.weight.")
        return torch.stack([f.v.T for f in self.low_rank[matrix]])

    def numel(self) -> int:
        """Numbers stored for all tasks (factors + dense task vectors)."""
        return (sum(f.u.numel() + f.s.numel() + f.v.numel()
                    for fs in self.low_rank.values() for f in fs)
                + sum(d.numel() for ds in self.dense.values() for d in ds))

    # -- merges -------------------------------------------------------------------------
    def merged_delta(self, tasks: Sequence[str], alpha: float = 1.0,
                     names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """α·TSV-M of the selected tasks' factors, per changed tensor (float32); only the
        changed tensors among ``names`` when given."""
        chosen = sorted({self.index(t) for t in tasks})
        if not chosen:
            raise RoutingError("An empty task set cannot be merged.",
                               fix="select at least one task.")
        wanted = None if names is None else set(names)
        out: dict[str, torch.Tensor] = {}
        for name, factors in self.low_rank.items():
            if wanted is not None and name not in wanted:
                continue
            active = [factors[i] for i in chosen if bool(factors[i].s.any())]
            if not active:  # the selected tasks left this matrix alone
                out[name] = torch.zeros_like(self.base[name], dtype=torch.float32)
                continue
            if len(active) == 1:  # one task's U, V are orthonormal already: TSV-M is TSV-C
                merged = (active[0].u * active[0].s) @ active[0].v.T
            else:
                merged = orthogonal_factors(active).delta()
            out[name] = alpha * merged
        for name, deltas in self.dense.items():
            if wanted is None or name in wanted:
                out[name] = alpha * sum(deltas[i] for i in chosen) / len(chosen)
        return out

    def merged_state(self, tasks: Sequence[str], alpha: float = 1.0,
                     names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """θ_0 + α·TSV-M(selected tasks) for every changed tensor (among ``names``), in
        θ_0's dtype."""
        return {name: (self.base[name].float() + delta).to(self.base[name].dtype)
                for name, delta in self.merged_delta(tasks, alpha, names).items()}


def _factor(delta: torch.Tensor, k: int) -> LowRank:
    if not bool(delta.any()):  # this task left the matrix alone: zero factors, no SVD
        m, n = delta.shape
        return LowRank(delta.new_zeros(m, k), delta.new_zeros(k), delta.new_zeros(n, k))
    return LowRank(*truncated_svd(delta, k))


def _check_expert(task: str, state: Mapping[str, torch.Tensor],
                  base: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in base.items():
        if not tensor.is_floating_point():
            continue
        if name not in state:
            raise RoutingError(
                f"Expert {task!r} has no tensor {name!r}.{did_you_mean(name, list(state))}",
                fix="route experts fine-tuned from the same base model (same tensor names).")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise RoutingError(
                f"Expert {task!r}: tensor {name!r} has shape {tuple(state[name].shape)}, the "
                f"base's is {tuple(tensor.shape)}.",
                fix="route experts fine-tuned from the same base model (same architecture).")

"""Whole-model alignment and merging: naive averaging, Re-Basin to a reference,
MergeMany and C²M³, all returning the aligned state dicts and their average.

Each is a function ``(state_dicts, spec, **options) -> AlignmentResult`` in the
:data:`ALIGNMENTS` registry; a new one is a function plus one ``ALIGNMENTS.register`` line
(docs/extending.md).

References: Ainsworth et al., "Git Re-Basin", ICLR 2023 (weight matching, MergeMany);
Crisostomi et al., "C²M³", NeurIPS 2024 (merge = average in the universe space).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from merge3.alignment.c2m3 import IterationCallback, frank_wolfe_synchronized_matching
from merge3.alignment.permute import Permutations, apply_permutations, identity_permutations
from merge3.alignment.spec import PermutationSpec
from merge3.alignment.weight_matching import merge_many, to_numpy, weight_matching
from merge3.errors import MergeError, UnknownNameError
from merge3.registry import Registry

__all__ = [
    "ALIGNMENTS",
    "AlignmentResult",
    "UnknownAlignmentError",
    "average_state_dicts",
    "align_models",
    "alignment_options",
    "c2m3_merge",
    "rebasin_merge",
    "mergemany_merge",
    "naive_merge",
    "permutations_to_lists",
]

StateDict = Mapping[str, torch.Tensor]


class UnknownAlignmentError(MergeError, UnknownNameError):
    """An alignment method name that is not registered."""


# name -> (state_dicts, spec, **options) -> AlignmentResult; filled at the end of the module
ALIGNMENTS: Registry[Callable[..., AlignmentResult]] = Registry(
    "alignment method", lambda f: callable(f) and not isinstance(f, type),
    expects="function (state_dicts, spec, **options) -> AlignmentResult",
    error=UnknownAlignmentError)


@dataclass(frozen=True)
class AlignmentResult:
    """Aligned models (model ``i`` permuted into the common frame by ``perms[i]``),
    their uniform average ``merged``, and the method's trace (objective per iteration)."""

    method: str
    merged: dict[str, torch.Tensor]
    aligned: list[dict[str, torch.Tensor]]
    perms: list[Permutations]
    objective: list[float] = field(default_factory=list)


def average_state_dicts(state_dicts: Sequence[StateDict]) -> dict[str, torch.Tensor]:
    """Uniform average of floating tensors; integer / bool buffers copied from the first."""
    out: dict[str, torch.Tensor] = {}
    for name, first in state_dicts[0].items():
        if first.is_floating_point():
            stacked = torch.stack([sd[name].to(torch.float64) for sd in state_dicts])
            out[name] = stacked.mean(0).to(first.dtype)
        else:
            out[name] = first.clone()
    return out


def _check_same_keys(state_dicts: Sequence[StateDict]) -> None:
    if len(state_dicts) < 2:
        raise MergeError(
            f"Alignment needs at least two models; got {len(state_dicts)}.",
            fix="pass two or more checkpoints of the same architecture.",
        )
    first = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=1):
        if set(sd) != set(first):
            missing = sorted(set(first) ^ set(sd))[:3]
            raise MergeError(
                f"Model {i} does not have the same tensors as model 0 (e.g. {missing}).",
                fix="align checkpoints of one architecture.",
            )
        for name, value in sd.items():
            if tuple(value.shape) != tuple(first[name].shape):
                raise MergeError(
                    f"Tensor {name!r} has shape {tuple(value.shape)} in model {i} but "
                    f"{tuple(first[name].shape)} in model 0.",
                    fix="align checkpoints of one architecture and size.",
                )


def _finish(
    method: str,
    state_dicts: Sequence[StateDict],
    spec: PermutationSpec,
    perms: list[Permutations],
    objective: list[float] | None = None,
) -> AlignmentResult:
    aligned = [apply_permutations(dict(sd), spec, p) for sd, p in zip(state_dicts, perms)]
    return AlignmentResult(method, average_state_dicts(aligned), aligned, perms, objective or [])


def naive_merge(state_dicts: Sequence[StateDict], spec: PermutationSpec, seed: int = 0
                ) -> AlignmentResult:
    """Plain averaging, no alignment (the baseline every alignment must beat). ``seed`` is
    accepted, and unused, so that every method of :func:`align_models` takes it."""
    _check_same_keys(state_dicts)
    sizes = spec.sizes(state_dicts[0])
    return _finish("naive", state_dicts, spec, [identity_permutations(sizes) for _ in state_dicts])


def rebasin_merge(
    state_dicts: Sequence[StateDict], spec: PermutationSpec, reference: int = 0, seed: int = 0
) -> AlignmentResult:
    """Git Re-Basin weight matching of every model to ``state_dicts[reference]``, then
    the average (Ainsworth et al. 2023, pairwise to a reference)."""
    _check_same_keys(state_dicts)
    params = [to_numpy(sd, spec) for sd in state_dicts]
    perms = [
        identity_permutations(spec.sizes(state_dicts[reference])) if i == reference
        else weight_matching(spec, params[reference], p, seed=seed)
        for i, p in enumerate(params)
    ]
    return _finish("rebasin", state_dicts, spec, perms)


def mergemany_merge(
    state_dicts: Sequence[StateDict], spec: PermutationSpec, seed: int = 0
) -> AlignmentResult:
    """MergeMany (Ainsworth et al. 2023, Alg. 3): each model matched to the mean of the
    others until nothing changes, then the average."""
    _check_same_keys(state_dicts)
    perms = merge_many(spec, [to_numpy(sd, spec) for sd in state_dicts], seed=seed)
    return _finish("mergemany", state_dicts, spec, perms)


def c2m3_merge(
    state_dicts: Sequence[StateDict],
    spec: PermutationSpec,
    *,
    max_iter: int = 200,
    tol: float = 1e-6,
    patience: int = 5,
    init: str = "sinkhorn",
    seed: int = 0,
    anchor: int | None = None,
    callback: IterationCallback | None = None,
    progress: bool = False,
) -> AlignmentResult:
    """C²M³ (Crisostomi et al., NeurIPS 2024): cycle-consistent Frank-Wolfe matching of
    all models into a universe, each model mapped there, then the average.

    ``result.objective`` holds the relaxed objective per Frank-Wolfe iteration;
    ``callback(iteration, objective, step)`` reports it live. ``anchor=k`` keeps model
    k's unit order as the universe (see ``frank_wolfe_synchronized_matching``).
    """
    _check_same_keys(state_dicts)
    params = [to_numpy(sd, spec) for sd in state_dicts]
    result = frank_wolfe_synchronized_matching(
        params, spec, max_iter=max_iter, tol=tol, patience=patience, init=init, seed=seed,
        anchor=anchor, callback=callback, progress=progress,
    )
    return _finish("c2m3", state_dicts, spec, result.perms, result.objective)


ALIGNMENTS.register("naive", naive_merge)
ALIGNMENTS.register("rebasin", rebasin_merge)
ALIGNMENTS.register("mergemany", mergemany_merge)
ALIGNMENTS.register("c2m3", c2m3_merge)


def align_models(
    state_dicts: Sequence[StateDict], spec: PermutationSpec, method: str = "c2m3", **options: Any
) -> AlignmentResult:
    """Run the alignment method ``method`` (a name in :data:`ALIGNMENTS`)."""
    return ALIGNMENTS.get(method)(state_dicts, spec, **options)


def alignment_options(method: str) -> frozenset[str]:
    """The keyword options alignment method ``method`` takes (e.g. c2m3: max_iter, anchor)."""
    parameters = list(inspect.signature(ALIGNMENTS.get(method)).parameters.values())[2:]
    return frozenset(p.name for p in parameters
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def permutations_to_lists(perms: Permutations) -> dict[str, list[int]]:
    """JSON-friendly copy of a permutation set."""
    return {p: np.asarray(v).tolist() for p, v in perms.items()}

"""Git Re-Basin weight matching (pairwise) and MergeMany.

Weight matching (Ainsworth, Hayase & Srinivasa, "Git Re-Basin", ICLR 2023, Alg. 1):
find permutations ``π`` of model B maximising ``Σ_W ⟨W_A, π(W_B)⟩_F`` by coordinate
descent: each permutation in turn, the others fixed, is a linear assignment problem;
stop after a full pass with no gain. MergeMany (ibid., Alg. 3): match each model to
the mean of the others (all already aligned), repeat until no permutation changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from merge3.alignment.permute import Permutations, apply_permutations, identity_permutations
from merge3.alignment.spec import PermutationSpec

__all__ = ["to_numpy", "matching_objective", "weight_matching", "merge_many"]

Params = dict[str, np.ndarray]


def to_numpy(state_dict: Mapping[str, Any], spec: PermutationSpec) -> Params:
    """The spec'd tensors of ``state_dict`` as float64 numpy arrays."""
    spec.validate(state_dict)
    out: Params = {}
    for name in spec.axes:
        value = state_dict[name]
        if hasattr(value, "detach"):
            value = value.detach().to("cpu").double().numpy()
        out[name] = np.asarray(value, dtype=np.float64)
    return out


def matching_objective(params_a: Params, params_b: Params, spec: PermutationSpec) -> float:
    """``Σ_W ⟨W_A, W_B⟩_F`` over the spec'd tensors (B already permuted)."""
    return float(sum(np.vdot(params_a[name], params_b[name]) for name in spec.axes))


def _similarity(
    perm_id: str,
    spec: PermutationSpec,
    params_a: Params,
    params_b: Params,
    perms: Mapping[str, np.ndarray],
) -> np.ndarray:
    """``S[i, j]`` = gain of matching unit ``i`` of A with unit ``j`` of B for ``perm_id``,
    every other axis of B permuted by the current ``perms``."""
    uses = spec.perm_to_axes[perm_id]
    size = params_a[uses[0][0]].shape[uses[0][1]]
    similarity = np.zeros((size, size))
    for name, axis in uses:
        w_a = params_a[name]
        w_b = params_b[name]
        for other_axis, other_perm in enumerate(spec.axes[name]):
            if other_axis != axis and other_perm is not None:
                w_b = np.take(w_b, perms[other_perm], axis=other_axis)
        w_a = np.moveaxis(w_a, axis, 0).reshape(size, -1)
        w_b = np.moveaxis(w_b, axis, 0).reshape(size, -1)
        similarity += w_a @ w_b.T
    return similarity


def weight_matching(
    spec: PermutationSpec,
    params_a: Params,
    params_b: Params,
    init_perms: Mapping[str, np.ndarray] | None = None,
    max_iter: int = 100,
    seed: int = 0,
) -> Permutations:
    """Permutations of B that align it to A (``apply_permutations(B, spec, perms)``).

    Coordinate descent over the permutations in a random order, each a LAP
    (``scipy.optimize.linear_sum_assignment``), until a full pass gains nothing.
    ``params_*`` are float64 arrays as returned by :func:`to_numpy`.
    """
    sizes = {p: params_a[uses[0][0]].shape[uses[0][1]] for p, uses in spec.perm_to_axes.items()}
    perms = (
        {p: np.asarray(v).copy() for p, v in init_perms.items()}
        if init_perms is not None
        else identity_permutations(sizes)
    )
    rng = np.random.default_rng(seed)
    perm_ids = list(spec.perm_to_axes)
    for _ in range(max_iter):
        improved = False
        for index in rng.permutation(len(perm_ids)):
            perm_id = perm_ids[index]
            similarity = _similarity(perm_id, spec, params_a, params_b, perms)
            rows = np.arange(sizes[perm_id])
            _, cols = linear_sum_assignment(similarity, maximize=True)
            old = similarity[rows, perms[perm_id]].sum()
            new = similarity[rows, cols].sum()
            # relative tolerance: a LAP re-solve can return an equal-cost assignment
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[perm_id] = cols
                improved = True
        if not improved:
            break
    return perms


def merge_many(
    spec: PermutationSpec,
    params: Sequence[Params],
    max_iter: int = 50,
    seed: int = 0,
) -> list[Permutations]:
    """MergeMany (Ainsworth et al. 2023, Alg. 3): one set of permutations per model
    mapping it into a common frame, found by matching each model to the mean of the
    others until no permutation changes."""
    rng = np.random.default_rng(seed)
    sizes = spec.sizes(params[0])
    perms = [identity_permutations(sizes) for _ in params]
    aligned = [dict(p) for p in params]
    for _ in range(max_iter):
        changed = False
        for i in rng.permutation(len(params)):
            others = [aligned[j] for j in range(len(params)) if j != i]
            target = {name: np.mean([o[name] for o in others], axis=0) for name in spec.axes}
            new = weight_matching(
                spec, target, params[i], init_perms=perms[i], seed=int(rng.integers(2**31))
            )
            if any(not np.array_equal(new[p], perms[i][p]) for p in new):
                changed = True
            perms[i] = new
            aligned[i] = apply_permutations(params[i], spec, new)
        if not changed:
            break
    return perms

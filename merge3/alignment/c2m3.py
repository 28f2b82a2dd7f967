"""C²M³: cycle-consistent multi-model matching by Frank-Wolfe in a universe space.

Crisostomi, Fumero, Baieri, Bernard & Rodolà, "C²M³: Cycle-Consistent Multi-Model
Merging", NeurIPS 2024 (repo crisostomi/cycle-consistent-model-merging).

Each model ``a`` and permutation ``p`` get a matrix ``P_a^p`` (n×n) mapping the universe
to model ``a``; the pairwise map ``P_ab = P_a P_bᵀ`` makes every cycle compose to the
identity. With ``U_a = W_a`` taken to the universe (``P_aᵀ`` applied on every
permuted axis; for a matrix ``U_a = R_aᵀ W_a C_a``) the objective to maximise is

    f = Σ_{a<b} Σ_W ⟨W_a, R_a R_bᵀ W_b C_b C_aᵀ⟩_F = Σ_{a<b} Σ_W ⟨U_a, U_b⟩_F,

relaxed to doubly-stochastic matrices. Frank-Wolfe: gradients of all variables, one
LAP per variable for the vertex ``D``, one global step ``t ∈ [0, 1]`` by exact line
search (``f`` along the segment is a polynomial in ``t``, expanded exactly), until the
gain stays below ``tol`` for ``patience`` iterations; then each ``P`` is rounded to a
permutation by a LAP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from merge3.alignment.permute import Permutations, invert_permutation
from merge3.alignment.spec import PermutationSpec
from merge3.errors import MergeError

__all__ = ["C2M3Result", "frank_wolfe_synchronized_matching", "sinkhorn", "universe_objective"]

Params = dict[str, np.ndarray]
Matrices = dict[str, np.ndarray]
IterationCallback = Callable[[int, float, float], None]


@dataclass(frozen=True)
class C2M3Result:
    """Rounded permutations (one set per model, model -> universe) and the FW trace.

    ``perms[a][p]`` is an index array: ``W.take(perms[a][p], axis)`` maps model ``a``
    into the universe. ``objective[k]`` is the relaxed objective after iteration ``k``
    (``objective[0]`` at initialisation); ``rounded_objective`` that of the permutations.
    """

    perms: list[Permutations]
    objective: list[float]
    step_sizes: list[float]
    rounded_objective: float
    iterations: int

    def pairwise(self, a: int, b: int) -> Permutations:
        """Permutations aligning model ``b`` to model ``a`` (``P_ab = P_a P_bᵀ``)."""
        return {
            p: self.perms[b][p][invert_permutation(self.perms[a][p])] for p in self.perms[a]
        }


def sinkhorn(matrix: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Alternate row and column normalisation of a positive matrix (Sinkhorn-Knopp)."""
    out = matrix.copy()
    for _ in range(iterations):
        out /= out.sum(axis=1, keepdims=True)
        out /= out.sum(axis=0, keepdims=True)
    return out


def _mode_product(tensor: np.ndarray, matrix_t: np.ndarray, axis: int) -> np.ndarray:
    """Multiply ``tensor`` along ``axis`` by ``matrix_t`` (``out[i] = Σ_j M[i, j] t[j]``)."""
    return np.moveaxis(np.tensordot(matrix_t, tensor, axes=([1], [axis])), 0, axis)


def _to_universe(
    params: Params, spec: PermutationSpec, matrices: Matrices, skip: tuple[str, int] | None = None
) -> Params:
    """``U = W`` with ``Pᵀ`` applied on every permuted axis (except ``skip``)."""
    out: Params = {}
    for name, axis_perms in spec.axes.items():
        value = params[name]
        for axis, perm_id in enumerate(axis_perms):
            if perm_id is not None and (name, axis) != skip:
                value = _mode_product(value, matrices[perm_id].T, axis)
        out[name] = value
    return out


def universe_objective(
    params: Sequence[Params], spec: PermutationSpec, matrices: Sequence[Matrices]
) -> float:
    """``Σ_{a<b} Σ_W ⟨U_a, U_b⟩ = ½(‖Σ_a U_a‖² − Σ_a ‖U_a‖²)``."""
    universes = [_to_universe(p, spec, m) for p, m in zip(params, matrices)]
    total = 0.0
    for name in spec.axes:
        stacked = [u[name] for u in universes]
        summed = np.sum(stacked, axis=0)
        total += 0.5 * (np.vdot(summed, summed) - sum(np.vdot(u, u) for u in stacked))
    return float(total)


def _gradients(
    params: Sequence[Params], spec: PermutationSpec, matrices: Sequence[Matrices]
) -> list[Matrices]:
    """``∂f/∂P_a^p``: for every use (W, axis) of p, ``W_a``'s other axes taken to the
    universe, times the sum of the other models' ``U_b`` (both with that axis first).
    For a matrix this is ``∂f/∂R_a = Σ_b W_a C_a C_bᵀ W_bᵀ R_b`` and
    ``∂f/∂C_a = Σ_b W_aᵀ R_a R_bᵀ W_b C_b`` (C²M³, Sec. 4)."""
    universes = [_to_universe(p, spec, m) for p, m in zip(params, matrices)]
    totals = {name: np.sum([u[name] for u in universes], axis=0) for name in spec.axes}
    grads: list[Matrices] = []
    for a, (param, mats) in enumerate(zip(params, matrices)):
        grad = {p: np.zeros_like(m) for p, m in mats.items()}
        for perm_id, uses in spec.perm_to_axes.items():
            size = grad[perm_id].shape[0]
            for name, axis in uses:
                partial = param[name]
                for other_axis, other_perm in enumerate(spec.axes[name]):
                    if other_perm is not None and other_axis != axis:
                        partial = _mode_product(partial, mats[other_perm].T, other_axis)
                others = totals[name] - universes[a][name]
                left = np.moveaxis(partial, axis, 0).reshape(size, -1)
                right = np.moveaxis(others, axis, 0).reshape(size, -1)
                grad[perm_id] += left @ right.T
        grads.append(grad)
    return grads


def _lap_vertex(gradient: np.ndarray) -> np.ndarray:
    rows, cols = linear_sum_assignment(gradient, maximize=True)
    vertex = np.zeros_like(gradient)
    vertex[rows, cols] = 1.0
    return vertex


def _objective_polynomial(
    params: Sequence[Params],
    spec: PermutationSpec,
    start: Sequence[Matrices],
    direction: Sequence[Matrices],
) -> np.polynomial.Polynomial:
    """``f(P + t Δ)`` as an exact polynomial in ``t``.

    Each ``U_a(t)`` is multilinear in its axes' matrices, so it expands into
    ``Σ_j t^j C_{a,j}`` with ``C_{a,j}`` the sum, over the subsets S of ``j`` permuted
    axes, of ``W`` with ``Δᵀ`` on S and ``Pᵀ`` elsewhere; then
    ``f(t) = ½(‖Σ_a U_a(t)‖² − Σ_a ‖U_a(t)‖²)`` is a polynomial of degree 2k.
    """
    coefficients = np.zeros(1)
    for name, axis_perms in spec.axes.items():
        axes = [(axis, perm) for axis, perm in enumerate(axis_perms) if perm is not None]
        per_model = []
        for param, p_start, p_dir in zip(params, start, direction):
            terms = [np.zeros_like(param[name]) for _ in range(len(axes) + 1)]
            for mask in range(2 ** len(axes)):
                value = param[name]
                for bit, (axis, perm) in enumerate(axes):
                    matrix = p_dir[perm] if mask >> bit & 1 else p_start[perm]
                    value = _mode_product(value, matrix.T, axis)
                terms[bin(mask).count("1")] += value
            per_model.append(terms)
        summed = [sum(model[j] for model in per_model) for j in range(len(axes) + 1)]
        layer = np.zeros(2 * len(axes) + 1)
        for i in range(len(axes) + 1):
            for j in range(len(axes) + 1):
                own = sum(np.vdot(model[i], model[j]) for model in per_model)
                layer[i + j] += 0.5 * (np.vdot(summed[i], summed[j]) - own)
        if len(layer) > len(coefficients):
            layer[: len(coefficients)] += coefficients
            coefficients = layer
        else:
            coefficients[: len(layer)] += layer
    return np.polynomial.Polynomial(coefficients)


def _line_search(poly: np.polynomial.Polynomial) -> float:
    """The ``t ∈ [0, 1]`` maximising ``poly``: among the real critical points in (0, 1)
    and the end points; ``t = 0`` (no move) unless something is strictly better."""
    roots = poly.deriv().roots()
    candidates = [float(r.real) for r in roots if abs(r.imag) < 1e-9 and 0.0 < r.real < 1.0]
    best_t, best_value = 0.0, poly(0.0)
    for t in [*candidates, 1.0]:
        if poly(t) > best_value:
            best_t, best_value = t, poly(t)
    return best_t


def _initial_matrices(
    sizes: Mapping[str, int], n_models: int, init: str, noise: float, rng: np.random.Generator
) -> list[Matrices]:
    if init == "identity":
        return [{p: np.eye(n) for p, n in sizes.items()} for _ in range(n_models)]
    if init == "sinkhorn":
        # near the barycentre of the Birkhoff polytope (1/n everywhere), perturbed so
        # that models are not all at the same point
        return [
            {p: sinkhorn(np.full((n, n), 1.0 / n) + noise / n * rng.random((n, n)))
             for p, n in sizes.items()}
            for _ in range(n_models)
        ]
    raise MergeError(
        f"Unknown C²M³ initialisation {init!r}.", fix="use 'sinkhorn' (default) or 'identity'."
    )


def frank_wolfe_synchronized_matching(
    params: Sequence[Params],
    spec: PermutationSpec,
    max_iter: int = 200,
    tol: float = 1e-6,
    patience: int = 5,
    init: str = "sinkhorn",
    init_noise: float = 0.01,
    seed: int = 0,
    callback: IterationCallback | None = None,
    progress: bool = False,
) -> C2M3Result:
    """Cycle-consistent permutations of ``params`` (float64, see ``to_numpy``) into a
    universe, by Frank-Wolfe (C²M³, Crisostomi et al. 2024, Alg. 1).

    ``callback(iteration, objective, step_size)`` is called after every iteration;
    ``progress`` shows a tqdm bar with the objective.
    """
    if len(params) < 2:
        raise MergeError(
            f"C²M³ needs at least two models; got {len(params)}.", fix="pass two or more models."
        )
    rng = np.random.default_rng(seed)
    sizes = spec.sizes(params[0])
    matrices = _initial_matrices(sizes, len(params), init, init_noise, rng)

    current = universe_objective(params, spec, matrices)
    objective, steps = [current], []
    best_seen, stalled, iteration = current, 0, 0
    bar = tqdm(total=max_iter, desc="C²M³ Frank-Wolfe", disable=not progress, leave=False)
    for iteration in range(1, max_iter + 1):
        grads = _gradients(params, spec, matrices)
        vertices = [{p: _lap_vertex(g) for p, g in grad.items()} for grad in grads]

        directions = [{p: v[p] - m[p] for p in m} for m, v in zip(matrices, vertices)]
        step = _line_search(_objective_polynomial(params, spec, matrices, directions))
        moved = [{p: m[p] + step * d[p] for p in m} for m, d in zip(matrices, directions)]
        value = universe_objective(params, spec, moved)
        if value < current:  # only round-off can make the exact value disagree; don't move
            step, value = 0.0, current
        else:
            matrices = moved
        current = value
        objective.append(current)
        steps.append(step)
        if callback is not None:
            callback(iteration, current, step)
        bar.update(1)
        bar.set_postfix(objective=f"{current:.6g}", step=f"{step:.3f}")
        # stop when the gain over the best value stays below tol for `patience` iterations
        if current - best_seen < tol:
            stalled += 1
        else:
            stalled, best_seen = 0, current
        if stalled >= patience:
            break
    bar.close()

    perms: list[Permutations] = []
    for mats in matrices:
        # P maps universe -> model; the index array maps model -> universe: u -> j
        perms.append({p: linear_sum_assignment(m.T, maximize=True)[1] for p, m in mats.items()})
    rounded = [
        {p: np.eye(len(idx))[:, idx] for p, idx in perm.items()} for perm in perms
    ]
    return C2M3Result(
        perms=perms,
        objective=objective,
        step_sizes=steps,
        rounded_objective=universe_objective(params, spec, rounded),
        iterations=iteration,
    )

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

import itertools
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


def sinkhorn(matrix: np.ndarray, iterations: int = 100, tol: float = 1e-12) -> np.ndarray:
    """Alternate row and column normalisation of a positive matrix (Sinkhorn-Knopp),
    until the row sums are within ``tol`` of 1 (columns are exact after each step)."""
    out = matrix.copy()
    for _ in range(iterations):
        out /= out.sum(axis=1, keepdims=True)
        out /= out.sum(axis=0, keepdims=True)
        if np.abs(out.sum(axis=1) - 1.0).max() < tol:
            break
    return out


def _mode_product(tensor: np.ndarray, matrix_t: np.ndarray, axis: int) -> np.ndarray:
    """Multiply ``tensor`` along ``axis`` by ``matrix_t`` (``out[i] = Σ_j M[i, j] t[j]``)."""
    return np.moveaxis(np.tensordot(matrix_t, tensor, axes=([1], [axis])), 0, axis)


def _to_universe(params: Params, spec: PermutationSpec, matrices: Matrices) -> Params:
    """``U = W`` with ``Pᵀ`` applied on every permuted axis."""
    out: Params = {}
    for name, axis_perms in spec.axes.items():
        value = params[name]
        for axis, perm_id in enumerate(axis_perms):
            if perm_id is not None:
                value = _mode_product(value, matrices[perm_id].T, axis)
        out[name] = value
    return out


def universe_objective(
    params: Sequence[Params], spec: PermutationSpec, matrices: Sequence[Matrices]
) -> float:
    """``Σ_{a<b} Σ_W ⟨U_a, U_b⟩ = ½(‖Σ_a U_a‖² − Σ_a ‖U_a‖²)``."""
    return _objective_of([_to_universe(p, spec, m) for p, m in zip(params, matrices)])


class _Products:
    """Memoised mode products of one model's tensors within one Frank-Wolfe iteration.

    ``get(name, assignment)`` is ``W`` with, on its i-th permuted axis, ``Pᵀ`` (``"P"``),
    ``Δᵀ`` (``"D"``) or nothing (``None``). Each product is derived from a cached one
    with one axis fewer, preferring to add a ``Δ`` last, so the gradient's partial
    products are reused by the line search's expansion.
    """

    def __init__(self, param: Params, spec: PermutationSpec, start: Matrices,
                 direction: Matrices | None = None,
                 universe: Params | None = None) -> None:
        self.param, self.start, self.direction = param, start, direction
        self.axes = {name: [(axis, perm) for axis, perm in enumerate(perms) if perm is not None]
                     for name, perms in spec.axes.items()}
        self.cache: dict[tuple[str, tuple[str | None, ...]], np.ndarray] = {}
        for name, value in (universe or {}).items():
            self.cache[(name, ("P",) * len(self.axes[name]))] = value

    def get(self, name: str, assignment: tuple[str | None, ...]) -> np.ndarray:
        key = (name, assignment)
        if key in self.cache:
            return self.cache[key]
        applied = [i for i, kind in enumerate(assignment) if kind is not None]
        if not applied:
            return self.param[name]
        deltas = [i for i in applied if assignment[i] == "D"]
        last = deltas[-1] if deltas else applied[-1]
        rest = assignment[:last] + (None,) + assignment[last + 1:]
        axis, perm = self.axes[name][last]
        matrix = self.start[perm] if assignment[last] == "P" else self.direction[perm]
        value = _mode_product(self.get(name, rest), matrix.T, axis)
        self.cache[key] = value
        return value

    def universe(self) -> Params:
        return {name: self.get(name, ("P",) * len(axes)) for name, axes in self.axes.items()}


def _gradients(spec: PermutationSpec, products: Sequence[_Products]) -> list[Matrices]:
    """``∂f/∂P_a^p``: for every use (W, axis) of p, ``W_a``'s other axes taken to the
    universe, times the sum of the other models' ``U_b`` (both with that axis first).
    For a matrix this is ``∂f/∂R_a = Σ_b W_a C_a C_bᵀ W_bᵀ R_b`` and
    ``∂f/∂C_a = Σ_b W_aᵀ R_a R_bᵀ W_b C_b`` (C²M³, Sec. 4)."""
    universes = [prod.universe() for prod in products]
    totals = {name: np.sum([u[name] for u in universes], axis=0) for name in spec.axes}
    grads: list[Matrices] = []
    for a, prod in enumerate(products):
        grad = {p: np.zeros_like(m) for p, m in prod.start.items()}
        for perm_id, uses in spec.perm_to_axes.items():
            size = grad[perm_id].shape[0]
            for name, axis in uses:
                axes = prod.axes[name]
                position = [ax for ax, _ in axes].index(axis)
                partial = prod.get(name, tuple(
                    None if i == position else "P" for i in range(len(axes))))
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


def _expansion(products: Sequence[_Products]) -> list[dict[str, list[np.ndarray]]]:
    """Per model and tensor, the coefficients ``C_j`` of ``U(P + tΔ) = Σ_j t^j C_j``.

    ``U`` is multilinear in its axes' matrices, so ``C_j`` sums, over the subsets of
    ``j`` permuted axes, ``W`` with ``Δᵀ`` on the subset and ``Pᵀ`` elsewhere.
    """
    out = []
    for prod in products:
        coefficients: dict[str, list[np.ndarray]] = {}
        for name, axes in prod.axes.items():
            terms: list[np.ndarray | None] = [None] * (len(axes) + 1)
            for combo in itertools.product("PD", repeat=len(axes)):
                value = prod.get(name, combo)
                j = combo.count("D")
                terms[j] = value if terms[j] is None else terms[j] + value
            coefficients[name] = terms
        out.append(coefficients)
    return out


def _objective_polynomial(
    expansion: Sequence[dict[str, list[np.ndarray]]],
) -> np.polynomial.Polynomial:
    """``f(P + tΔ) = ½(‖Σ_a U_a(t)‖² − Σ_a ‖U_a(t)‖²)`` as an exact polynomial in ``t``."""
    coefficients = np.zeros(1)
    for name, first in expansion[0].items():
        order = len(first)
        summed = [sum(model[name][j] for model in expansion) for j in range(order)]
        layer = np.zeros(2 * order - 1)
        for i in range(order):
            for j in range(order):
                own = sum(np.vdot(model[name][i], model[name][j]) for model in expansion)
                layer[i + j] += 0.5 * (np.vdot(summed[i], summed[j]) - own)
        if len(layer) > len(coefficients):
            layer[: len(coefficients)] += coefficients
            coefficients = layer
        else:
            coefficients[: len(layer)] += layer
    return np.polynomial.Polynomial(coefficients)


def _objective_of(universes: Sequence[Params]) -> float:
    total = 0.0
    for name in universes[0]:
        stacked = [u[name] for u in universes]
        summed = np.sum(stacked, axis=0)
        total += 0.5 * (np.vdot(summed, summed) - sum(np.vdot(u, u) for u in stacked))
    return float(total)


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
    anchor: int | None = None,
    callback: IterationCallback | None = None,
    progress: bool = False,
) -> C2M3Result:
    """Cycle-consistent permutations of ``params`` (float64, see ``to_numpy``) into a
    universe, by Frank-Wolfe (C²M³, Crisostomi et al. 2024, Alg. 1).

    ``callback(iteration, objective, step_size)`` is called after every iteration;
    ``progress`` shows a tqdm bar with the objective.

    ``anchor=k`` fixes model k's matrices to the identity (the universe is then model
    k's own unit order; the discrete optimum is unchanged, since ``P_ab = P_a P_bᵀ`` is
    invariant to a common permutation). By default all models move, as in the paper,
    except with two models: there the free gauge lets both sides move towards each other
    at once and Frank-Wolfe can stall inside the polytope, so model 0 is anchored, which
    is C²M³'s own pairwise Frank-Wolfe matching of P_AB.
    """
    if len(params) < 2:
        raise MergeError(
            f"C²M³ needs at least two models; got {len(params)}.", fix="pass two or more models."
        )
    if anchor is None and len(params) == 2:
        anchor = 0
    if anchor is not None and not 0 <= anchor < len(params):
        raise MergeError(f"anchor={anchor} is not a model index (0..{len(params) - 1}).",
                         fix="pass the index of one of the models, or None.")
    rng = np.random.default_rng(seed)
    sizes = spec.sizes(params[0])
    matrices = _initial_matrices(sizes, len(params), init, init_noise, rng)
    if anchor is not None:  # fix the universe's gauge to model `anchor`'s own order
        matrices[anchor] = {p: np.eye(n) for p, n in sizes.items()}

    universes = [_to_universe(p, spec, m) for p, m in zip(params, matrices)]
    current = _objective_of(universes)
    objective, steps = [current], []
    best_seen, stalled, iteration = current, 0, 0
    bar = tqdm(total=max_iter, desc="C²M³ Frank-Wolfe", disable=not progress, leave=False)
    for iteration in range(1, max_iter + 1):
        products = [_Products(p, spec, m, universe=u)
                    for p, m, u in zip(params, matrices, universes)]
        grads = _gradients(spec, products)
        for a, (prod, grad) in enumerate(zip(products, grads)):
            prod.direction = (
                {p: np.zeros_like(g) for p, g in grad.items()} if a == anchor
                else {p: _lap_vertex(g) - prod.start[p] for p, g in grad.items()})
        expansion = _expansion(products)
        step = _line_search(_objective_polynomial(expansion))
        moved = [{name: sum(c * step**j for j, c in enumerate(terms))
                  for name, terms in model.items()} for model in expansion]
        value = _objective_of(moved)
        if value >= current:  # round-off could only make a tiny step disagree; then stay
            matrices = [{p: prod.start[p] + step * prod.direction[p] for p in prod.start}
                        for prod in products]
            universes, current = moved, value
        else:
            step = 0.0
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

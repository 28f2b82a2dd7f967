"""NSGA-III survivor selection (reference points), for searches with many objectives.

Deb & Jain, "An Evolutionary Many-Objective Optimization Algorithm Using Reference-Point-
Based Nondominated Sorting Approach, Part I", IEEE TEVC 18(4), 2014. With six objectives
almost every candidate is non-dominated, so NSGA-II's last-front cut (crowding distance)
decides nearly all of selection, and crowding distance spreads badly in high dimensions.
NSGA-III cuts the last front by niches instead:

1. the fronts F1, F2, … are taken whole while they fit; the front Fl that does not fit
   gives the remaining K survivors;
2. the candidates S of F1 … Fl are **normalised** (minimisation form): the ideal point
   (best value per objective) is subtracted, the extreme point of each axis is the
   member minimising the achievement scalarising function with weights e_j (other
   weights 1e-6), and each objective is divided by the intercept of the hyperplane
   through the extreme points — or, where that plane is degenerate or cuts an axis at a
   non-positive or vanishing value, by the worst value of S on the axis;
3. each member of S is **associated** with the reference line (through the origin and a
   Das-Dennis point on the unit simplex) nearest to it, by perpendicular distance;
4. **niching**: repeatedly take the reference point with the fewest survivors so far
   (ties drawn at random) that Fl still has members for; with none yet, the Fl member
   nearest its line survives, else one of its Fl members drawn at random.

The reference points are Das & Dennis's (SIAM J. Optim. 8(3), 1998): every point of the
simplex whose coordinates are multiples of 1/p. The extreme points are those of the
current S only (the paper's running archive of extremes is not kept), as in Optuna's
``NSGAIIISampler`` (optuna/samplers/_nsgaiii/_elite_population_selection_strategy.py),
which this module was checked against; the code is merge3's own.

:class:`LineageNSGAIIISampler` is :class:`~search.nsga2.LineageNSGAIISampler` with this
selection: places, seeded draws, recorded parents and exact resume are the same, and the
niching's random draws come from the (seed, generation) stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from math import comb
from typing import TYPE_CHECKING

import numpy as np

from search.nsga2 import LineageNSGAIISampler, maximised, nondominated_fronts

if TYPE_CHECKING:
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial

__all__ = ["LineageNSGAIIISampler", "reference_points", "default_divisions", "normalise",
           "associate", "niche_survivors", "nsga3_elite"]

_WEIGHT_FLOOR = 1e-6  # the ASF's weight on the axes other than the extreme point's
_INTERCEPT_FLOOR = 1e-10  # an intercept below this is degenerate: the axis' worst is used


def reference_points(objectives: int, divisions: int) -> np.ndarray:
    """Das-Dennis points: every point of the unit simplex in ``objectives`` dimensions
    whose coordinates are multiples of 1 / ``divisions``; C(M + p − 1, p) rows × M."""
    if objectives < 1 or divisions < 1:
        raise ValueError(f"reference points need objectives >= 1 and divisions >= 1, got "
                         f"{objectives} and {divisions}")
    points = []
    # stars and bars: the M − 1 bars' positions among p + M − 1 places
    for bars in combinations(range(divisions + objectives - 1), objectives - 1):
        edges = (-1, *bars, divisions + objectives - 1)
        points.append([edges[i + 1] - edges[i] - 1 for i in range(objectives)])
    return np.asarray(points, dtype=float) / divisions


def default_divisions(objectives: int, population: int) -> int:
    """The fewest divisions p whose C(M + p − 1, p) reference points are at least the
    population (Deb & Jain size the population to about the number of points)."""
    divisions = 1
    while comb(objectives + divisions - 1, divisions) < population:
        divisions += 1
    return divisions


def normalise(costs: np.ndarray) -> np.ndarray:
    """Deb & Jain's normalisation of ``costs`` (n × m, minimised; the members of S): ideal
    point subtracted, then each axis divided by its hyperplane intercept (step 2 of the
    module docstring). Rows 0 … n − 1 stay in order."""
    costs = np.asarray(costs, dtype=float)
    n, m = costs.shape
    translated = costs - costs.min(axis=0)
    weights = np.full((m, m), _WEIGHT_FLOOR)
    np.fill_diagonal(weights, 1.0)
    # asf[j, i]: the achievement scalarising function of member i for axis j
    asf = np.max(translated[None, :, :] / weights[:, None, :], axis=2)
    extremes = translated[np.argmin(asf, axis=1)]
    worst = translated.max(axis=0)
    intercepts = worst
    if np.linalg.matrix_rank(extremes) == m:
        inverse = np.linalg.solve(extremes, np.ones(m))
        with np.errstate(divide="ignore"):
            plane = 1.0 / inverse
        if np.all(np.isfinite(plane)) and np.all(plane > _INTERCEPT_FLOOR):
            intercepts = plane
    intercepts = np.where(intercepts > _INTERCEPT_FLOOR, intercepts, 1.0)
    return translated / intercepts


def associate(normalised: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest reference line (through the origin and a row of ``references``)
    and its perpendicular distance to it: (n,) indices, (n,) distances."""
    directions = references / np.linalg.norm(references, axis=1, keepdims=True)
    along = normalised @ directions.T  # (n, r): length of each projection
    squared = np.maximum((normalised ** 2).sum(axis=1, keepdims=True) - along ** 2, 0.0)
    distance = np.sqrt(squared)
    nearest = np.argmin(distance, axis=1)  # ties: the lower reference index
    return nearest, distance[np.arange(len(normalised)), nearest]


def niche_survivors(nearest: np.ndarray, distance: np.ndarray, kept: int, wanted: int,
                    rng: np.random.Generator) -> list[int]:
    """Step 4 (niching): of the rows ``kept`` … n − 1 (the last front; rows before ``kept``
    survive already), the ``wanted`` that fill the emptiest niches, in the order chosen."""
    counts: dict[int, int] = {}
    for reference in nearest[:kept]:
        counts[int(reference)] = counts.get(int(reference), 0) + 1
    members: dict[int, list[int]] = {}
    for row in range(kept, len(nearest)):
        members.setdefault(int(nearest[row]), []).append(row)
    chosen: list[int] = []
    while len(chosen) < wanted and members:
        fewest = min(counts.get(r, 0) for r in members)
        tied = sorted(r for r in members if counts.get(r, 0) == fewest)
        reference = tied[int(rng.integers(len(tied)))]
        candidates = members[reference]
        if fewest == 0:  # an empty niche takes the member nearest its line
            pick = min(range(len(candidates)), key=lambda i: (distance[candidates[i]], i))
        else:
            pick = int(rng.integers(len(candidates)))
        chosen.append(candidates.pop(pick))
        counts[reference] = fewest + 1
        if not candidates:
            del members[reference]
    return chosen


def nsga3_elite(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], size: int,
                rng: np.random.Generator, references: np.ndarray | None = None
                ) -> list[FrozenTrial]:
    """NSGA-III's survivors: the ``size`` best of ``trials`` by non-dominated rank, the
    last front cut by niching on ``references`` (default: Das-Dennis points, see
    :func:`default_divisions`); the whole fronts first, then the niched members."""
    values = maximised(trials, directions)
    kept: list[int] = []
    for front in nondominated_fronts(values):
        if len(kept) + len(front) <= size:
            kept.extend(front)
            if len(kept) == size:
                break
            continue
        members = kept + front
        m = values.shape[1]
        if references is None:
            references = reference_points(m, default_divisions(m, size))
        if references.shape[1] != m:
            raise ValueError(f"reference points have {references.shape[1]} coordinates, the "
                             f"study {m} objectives")
        nearest, distance = associate(normalise(-values[members]), references)
        extra = niche_survivors(nearest, distance, len(kept), size - len(kept), rng)
        kept.extend(members[row] for row in extra)
        break
    return [trials[i] for i in kept]


class LineageNSGAIIISampler(LineageNSGAIISampler):
    """NSGA-III with lineage and deterministic resume: the lineage NSGA-II sampler whose
    survivors are chosen by :func:`nsga3_elite`. ``divisions``: the Das-Dennis p (default:
    :func:`default_divisions` of the study's objectives and the population)."""

    def __init__(self, *, divisions: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if divisions is not None and divisions < 1:
            raise ValueError(f"divisions must be at least 1, got {divisions}")
        self.divisions = divisions

    def survivors(self, trials: list[FrozenTrial], directions: Sequence[StudyDirection],
                  generation: int) -> list[FrozenTrial]:
        m = len(directions)
        references = reference_points(
            m, self.divisions or default_divisions(m, self.population_size))
        return nsga3_elite(trials, directions, self.population_size,
                           self.survivor_rng(generation), references)

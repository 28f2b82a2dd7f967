"""Pareto helpers: the front, its hypervolume, and which candidates are close calls."""

from __future__ import annotations

import numpy as np

from search.pareto import close_call, hypervolume, pareto_mask


def test_front_and_hypervolume_of_a_known_set():
    values = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.4, 0.4], [0.5, 0.5]])
    assert pareto_mask(values).tolist() == [True, True, True, False, True]
    # the union of the rectangles [0, x] × [0, y], in vertical strips
    assert np.isclose(hypervolume(values), 0.4 * 0.1 + 0.4 * 0.5 + 0.1 * 0.9)


def test_close_calls_are_dominated_but_within_their_error():
    front = np.array([[0.8, 0.2], [0.5, 0.5], [0.2, 0.8]])
    # dominated by (0.5, 0.5), but +1 s.e. reaches (0.52, 0.52): not dominated any more
    assert close_call([0.47, 0.47], [0.05, 0.05], front)
    # the same point, a tight error: still dominated
    assert not close_call([0.47, 0.47], [0.01, 0.01], front)
    # a wider margin turns it into a close call
    assert close_call([0.47, 0.47], [0.01, 0.01], front, margin=4.0)
    # on the front already: not a close call
    assert not close_call([0.6, 0.45], [0.05, 0.05], front)
    # far behind
    assert not close_call([0.1, 0.1], [0.05, 0.05], front)
    # nothing to compare with
    assert not close_call([0.1, 0.1], [0.05, 0.05], np.empty((0, 2)))


def _union_of_boxes(points: np.ndarray) -> float:
    """The volume of the union of boxes [0, p] by inclusion-exclusion (exact)."""
    from itertools import combinations

    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in combinations(points, size):
            total += (-1) ** (size + 1) * float(np.prod(np.min(subset, axis=0)))
    return total


def test_hypervolume_is_exact_in_one_to_four_objectives():
    rng = np.random.default_rng(0)
    for objectives in (1, 2, 3, 4):
        for n in (1, 4, 7):
            values = rng.random((n, objectives))
            reference = rng.random(objectives) * 0.3
            expected = _union_of_boxes(np.maximum(values - reference, 0.0))
            assert np.isclose(hypervolume(values, reference), expected, rtol=1e-12)

"""NSGA-III (search/nsga3.py): reference points, normalisation, niching on hand-made
fronts, and the lineage sampler's resume (driven as tests/search/test_nsga2.py drives
NSGA-II)."""

from __future__ import annotations

import random
from math import comb

import numpy as np
import pytest
from optuna.study import StudyDirection

from search.nsga2 import elite
from search.nsga3 import (
    LineageNSGAIIISampler,
    associate,
    default_divisions,
    niche_survivors,
    normalise,
    nsga3_elite,
    reference_points,
)
from search.strategy import SAMPLERS, make_sampler, open_study
from tests.search.test_nsga2 import GENERATIONS, POPULATION, drive, placed, three_objectives

MAX2 = [StudyDirection.MAXIMIZE] * 2


def _trials(tmp_path, points: list[tuple[float, ...]]):
    """Complete Optuna trials holding ``points`` as their values (in order)."""
    study = open_study(name="p", storage=f"sqlite:///{tmp_path / 'p.db'}",
                       objectives=len(points[0]),
                       sampler=make_sampler("random", population=2, seed=0))
    for values in points:
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, list(values))
    return study.get_trials()


def test_das_dennis_points_cover_the_simplex_in_steps_of_one_over_p():
    points = reference_points(3, 4)
    assert points.shape == (comb(3 + 4 - 1, 4), 3) == (15, 3)
    assert np.allclose(points.sum(axis=1), 1.0)
    assert np.allclose(points * 4, np.round(points * 4))
    assert len({tuple(p) for p in points}) == 15
    assert {tuple(p) for p in reference_points(2, 2)} == {(0, 1), (0.5, 0.5), (1, 0)}
    # the demo: 6 objectives, 12 candidates -> p = 2, 21 points (p = 1 has only 6)
    assert default_divisions(6, 12) == 2 and len(reference_points(6, 2)) == 21
    with pytest.raises(ValueError, match="divisions >= 1"):
        reference_points(3, 0)


def test_normalisation_maps_the_extreme_points_to_the_unit_axes():
    costs = np.array([[1.0, 9.0], [5.0, 1.0], [3.0, 3.0]])  # ideal (1, 1)
    normalised = normalise(costs)
    # extremes (0, 8) and (4, 0) after the ideal point: intercepts 4 and 8
    assert normalised == pytest.approx(np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.25]]))
    # a degenerate plane (all on one line through the ideal point) falls back to the worst
    line = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])
    assert normalise(line) == pytest.approx(line / np.array([2.0, 4.0]))


def test_each_point_is_associated_with_its_nearest_reference_line():
    references = reference_points(2, 2)  # (0,1), (0.5,0.5), (1,0)
    points = np.array([[0.1, 0.9], [0.45, 0.5], [0.9, 0.05]])
    nearest, distance = associate(points, references)
    order = [tuple(references[i]) for i in nearest]
    assert order == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    assert distance == pytest.approx([0.1, 0.05 / np.sqrt(2), 0.05])


def test_niching_fills_empty_niches_first_and_takes_the_nearest_member():
    # rows 0, 1 survive already, both in niche 0; the last front: rows 2 … 5
    nearest = np.array([0, 0, 1, 0, 2, 2])
    distance = np.array([0.0, 0.0, 0.3, 0.01, 0.2, 0.1])
    for seed in range(5):
        chosen = niche_survivors(nearest, distance, 2, 2, np.random.default_rng(seed))
        # niches 1 and 2 are empty: they are served before niche 0, whose row 3 is nearest
        # of all to its line; niche 2 takes row 5, its nearest, not row 4
        assert sorted(chosen) == [2, 5]


def test_nsga3_keeps_the_member_nearest_each_line_where_crowding_keeps_another(tmp_path):
    # one front of five; three survive
    points = [(1.0, 0.0), (0.0, 1.0), (0.52, 0.5), (0.7, 0.32), (0.3, 0.72)]
    trials = _trials(tmp_path, points)
    # crowding: both boundaries, then (0.3, 0.72), the widest gap (1.02 vs 0.98 and 0.8)
    assert [tuple(t.values) for t in elite(trials, MAX2, 3)] == [points[0], points[1],
                                                                points[4]]
    # NSGA-III, lines (0,1), (0.5,0.5), (1,0) in the normalised space: (0.52, 0.5) is the
    # nearest to the middle line; (0.3, 0.72) shares (1,0)'s niche with (1, 0), nearer
    for seed in range(4):
        kept = nsga3_elite(trials, MAX2, 3, np.random.default_rng(seed), reference_points(2, 2))
        assert sorted(tuple(t.values) for t in kept) == sorted(points[:3])


def test_nsga3_takes_whole_fronts_first(tmp_path):
    points = [(1.0, 0.0), (0.0, 1.0), (0.1, 0.1), (0.05, 0.05), (0.6, 0.6)]
    trials = _trials(tmp_path, points)
    kept = nsga3_elite(trials, MAX2, 4, np.random.default_rng(0))
    # front 1: (1,0), (0,1), (0.6,0.6); front 2: (0.1, 0.1) fills the fourth place
    assert sorted(tuple(t.values) for t in kept) == sorted(points[:3] + [points[4]])
    assert kept[:3] == [trials[0], trials[1], trials[4]]  # the whole front first, in order
    # minimised, the first front is (1,0), (0,1), (0.05,0.05)
    minimised = nsga3_elite(trials, [StudyDirection.MINIMIZE] * 2, 3,
                            np.random.default_rng(0))
    assert sorted(tuple(t.values) for t in minimised) == [(0.0, 1.0), (0.05, 0.05),
                                                          (1.0, 0.0)]


def test_nsga3_is_registered_as_a_many_objective_lineage_sampler():
    kind = SAMPLERS.get("nsga3")
    assert kind.multi_objective
    sampler = make_sampler("nsga3", population=6, seed=3)
    assert isinstance(sampler, LineageNSGAIIISampler) and sampler.population_size == 6
    with pytest.raises(ValueError, match="divisions"):
        LineageNSGAIIISampler(divisions=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_nsga3_resume_after_kills_asks_what_an_uninterrupted_run_asked(tmp_path, seed):
    def run(name: str, run_seed: int, order: random.Random, kills: random.Random | None
            ) -> tuple[dict, int]:
        url = f"sqlite:///{tmp_path / name}.db"
        killed = 0
        while not drive(url, run_seed, order, kills.randint(0, POPULATION + 1) if kills
                        else None, sampler="nsga3", objectives=three_objectives):
            killed += 1
        return placed(url, "nsga3", 3), killed

    expected, _ = run("reference", seed, random.Random(seed), None)
    resumed, kills = run("killed", seed, random.Random(200 + seed), random.Random(100 + seed))
    assert kills >= 1
    assert sorted(expected) == [(g, s) for g in range(GENERATIONS) for s in range(POPULATION)]
    assert resumed == expected
    for (generation, _), (_, parents) in expected.items():
        assert len(set(parents)) == (2 if generation else 0)
        assert all(g < generation for g, _ in parents)
    # the same seed under NSGA-II: other survivors, so other children
    nsga2_url = f"sqlite:///{tmp_path / 'nsga2'}.db"
    assert drive(nsga2_url, seed, random.Random(seed), None, objectives=three_objectives)
    assert placed(nsga2_url, "nsga2", 3) != expected

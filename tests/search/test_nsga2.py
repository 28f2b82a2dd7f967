"""The lineage NSGA-II sampler: its survivors, and a resume that asks what was asked.

No Ray here: a real Optuna study in SQLite driven the way search/loop.py drives it (a
generation asked, its results told in a shuffled order), "killed" at seeded random points
by dropping the study and sampler and resuming with fresh ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

from search.nsga2 import LineageNSGAIISampler, crowding_distance, elite
from search.strategy import fail_interrupted, make_sampler, open_study

POPULATION, GENERATIONS = 4, 4
GENES = ("a", "b", "c")


def _objectives(params: dict[str, float]) -> list[float]:
    return [params["a"] + 0.3 * params["b"], 1.0 - params["a"] + 0.5 * params["c"]]


def three_objectives(params: dict[str, float]) -> list[float]:
    """A third objective against the first two, so fronts are wide (test_nsga3.py)."""
    return [*_objectives(params), params["b"] * (1.0 - params["c"]) - 0.4 * params["a"]]


def _finished(study) -> int:
    return sum(t.state.is_finished() and not t.user_attrs.get("interrupted")
               for t in study.get_trials(deepcopy=False))


def drive(url: str, seed: int, order: random.Random, kill_after: int | None,
          sampler: str = "nsga2", objectives: Callable[[dict], list[float]] = _objectives
          ) -> bool:
    """Run the search on ``url`` until the budget is done (True) or ``kill_after`` more
    results were told (False: the remaining asked trials stay RUNNING, as after kill -9)."""
    n_objectives = len(objectives(dict.fromkeys(GENES, 0.5)))
    study = open_study(name="s", storage=url, objectives=n_objectives,
                       sampler=make_sampler(sampler, population=POPULATION, seed=seed))
    fail_interrupted(study)
    told = 0
    while (done := _finished(study)) < POPULATION * GENERATIONS:
        count = POPULATION * (done // POPULATION + 1) - done
        trials = [study.ask() for _ in range(count)]
        for trial in trials:
            for gene in GENES:
                trial.suggest_float(gene, 0.0, 1.0)
        order.shuffle(trials)  # results arrive in any order
        for trial in trials:
            if kill_after is not None and told == kill_after:
                return False
            study.tell(trial, objectives(trial.params))
            told += 1
    return True


def placed(url: str, sampler: str = "nsga2", objectives: int = 2
           ) -> dict[tuple[int, int], tuple]:
    """(generation, slot) -> (the genome, the parents' places) of each complete trial."""
    study = open_study(name="s", storage=url, objectives=objectives,
                       sampler=make_sampler(sampler, population=POPULATION, seed=0))
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE]
    place = {t.number: (t.user_attrs["generation"], t.user_attrs["slot"]) for t in trials}
    return {place[t.number]: (tuple(sorted(t.params.items())),
                              tuple(sorted(place[p] for p in t.user_attrs.get("parents", []))))
            for t in trials}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resume_after_kills_at_random_points_asks_what_an_uninterrupted_run_asked(
        tmp_path, seed):
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    assert drive(reference, seed, random.Random(seed), None)
    killed = f"sqlite:///{tmp_path / 'killed.db'}"
    points = random.Random(100 + seed)
    order = random.Random(200 + seed)  # other arrival orders than the reference's
    kills = 0
    while not drive(killed, seed, order, points.randint(0, POPULATION + 1)):
        kills += 1
    assert kills >= 1
    expected = placed(reference)
    assert sorted(expected) == [(g, s) for g in range(GENERATIONS) for s in range(POPULATION)]
    assert placed(killed) == expected
    # the children are real children: two distinct parents each, from earlier generations
    for (generation, _), (_, parents) in expected.items():
        assert len(set(parents)) == (2 if generation else 0)
        assert all(g < generation for g, _ in parents)
    # the uninterrupted runs of two seeds differ: the draws do depend on the seed
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert drive(other, seed + 50, random.Random(seed), None)
    assert placed(other) != expected


def test_a_seeded_run_draws_the_same_whatever_order_results_arrive(tmp_path):
    first, second = (f"sqlite:///{tmp_path / f'{n}.db'}" for n in ("first", "second"))
    assert drive(first, 7, random.Random(1), None)
    assert drive(second, 7, random.Random(2), None)
    assert placed(first) == placed(second)


def test_elite_keeps_the_first_fronts_and_cuts_the_last_by_crowding(tmp_path):
    study = open_study(name="e", storage=f"sqlite:///{tmp_path / 'e.db'}", objectives=2,
                       sampler=make_sampler("random", population=4, seed=0))
    points = [(1.0, 0.0), (0.0, 1.0), (0.6, 0.6), (0.5, 0.5), (0.9, 0.05), (0.2, 0.2)]
    for values in points:
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, list(values))
    trials = study.get_trials()
    directions = [StudyDirection.MAXIMIZE] * 2
    # first front: (1,0), (0,1), (0.6,0.6), (0.9,0.05); size 3 cuts it by crowding: the two
    # boundary points are infinite; of the inner ones (0.6, 0.6) has the wider gap
    assert [t.values for t in elite(trials, directions, 3)] == [[1.0, 0.0], [0.0, 1.0],
                                                               [0.6, 0.6]]
    # size 5: the whole first front, then the best of the second, (0.5, 0.5)
    kept = elite(trials, directions, 5)
    assert sorted(map(tuple, (t.values for t in kept))) == sorted(points[:5])
    # minimised, the first front is another: (0.2, 0.2) joins it, (0.6, 0.6) leaves it
    minimised = elite(trials, [StudyDirection.MINIMIZE] * 2, 4)
    assert sorted(map(tuple, (t.values for t in minimised))) == [
        (0.0, 1.0), (0.2, 0.2), (0.9, 0.05), (1.0, 0.0)]


def test_crowding_distance_of_a_front():
    values = np.array([[0.0, 1.0], [0.25, 0.75], [0.5, 0.6], [1.0, 0.0]])
    distance = crowding_distance(values)
    assert np.isinf(distance[0]) and np.isinf(distance[3])
    # inner points: the gaps between their neighbours, each objective scaled to [0, 1]
    assert distance[1] == pytest.approx(0.5 + 0.4)
    assert distance[2] == pytest.approx(0.75 + 0.75)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="population_size"):
        LineageNSGAIISampler(population_size=1)
    with pytest.raises(ValueError, match="crossover_prob"):
        LineageNSGAIISampler(crossover_prob=1.5)

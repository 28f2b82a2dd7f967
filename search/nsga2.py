"""NSGA-II with lineage and deterministic resume, on Optuna's public sampler API.

Every trial the sampler hands out has a place: ``(generation, slot)``, slot 0 … P−1 of a
generation of P. All its random draws come from generators seeded by ``(seed, generation,
slot)``, and each generation's parents are chosen from the previous ones' trials ordered
by slot — never by trial number or the order results arrived in. The place of every trial
is stored with it (user attributes ``generation``, ``slot``, ``parents``), so after a
``kill -9`` the sampler rebuilds its state from the study: a trial the kill cut short
(FAIL + ``interrupted``) frees its slot, and the trial asked next takes that slot and
draws exactly what the uninterrupted search drew there.

The algorithm is Deb et al.'s NSGA-II (IEEE TEVC 6(2), 2002) as Optuna's
``NSGAIISampler`` runs it by default, written here so its state is ours: the parents of
generation g are the elite of generation g−1's parents plus generation g−1's complete
trials (non-dominated sorting, then crowding distance); a child's two parents are picked
by two binary tournaments on Pareto dominance; with probability ``crossover_prob`` it
takes each gene from either parent (uniform crossover, ``swapping_prob`` 0.5), else
copies one parent; each gene is then re-drawn at random with probability
``mutation_prob`` (default 1 / genes). Generation 0 is drawn at random.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.pareto import pareto_mask

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.storages import RDBStorage

__all__ = ["LineageNSGAIISampler", "Place", "GENERATION", "SLOT", "PARENTS", "INTERRUPTED",
           "elite", "crowding_distance", "nondominated_fronts", "maximised"]

# user attributes of a trial that the sampler writes (and reads back after a kill)
GENERATION = "generation"
SLOT = "slot"  # its place in its generation, 0 … population − 1
PARENTS = "parents"  # trial numbers of its two parents (none in generation 0)
INTERRUPTED = "interrupted"  # in flight at a kill: marked FAIL on resume, its slot asked again

# one stream of draws per purpose, so adding a draw to one never shifts another
_TOURNAMENT, _CROSSOVER, _INDEPENDENT, _SURVIVORS = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Place:
    """Where a trial stands: its generation, its slot, its parents' trials (or none)."""

    generation: int
    slot: int
    parents: tuple[FrozenTrial, ...] = ()


def maximised(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
              ) -> np.ndarray:
    """The trials' values (n × m), each objective signed so that larger is better."""
    sign = np.array([1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in directions])
    return np.array([t.values for t in trials], dtype=float).reshape(len(trials), -1) * sign


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """Deb et al.'s crowding distance of each row of ``values`` (n × m, one front):
    boundary rows get infinity, others the sum over objectives of the normalised gap
    between their neighbours."""
    n, m = values.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(values[:, k], kind="stable")
        low, high = values[order[0], k], values[order[-1], k]
        distance[order[0]] = distance[order[-1]] = np.inf
        if high > low:
            gaps = (values[order[2:], k] - values[order[:-2], k]) / (high - low)
            distance[order[1:-1]] += gaps
    return distance


def nondominated_fronts(values: np.ndarray) -> list[list[int]]:
    """Row indices of ``values`` (n × m, maximised) by non-dominated front, best first;
    each front in row order."""
    left = list(range(len(values)))
    fronts: list[list[int]] = []
    while left:
        front = [left[i] for i in np.flatnonzero(pareto_mask(values[left]))]
        fronts.append(front)
        taken = set(front)
        left = [i for i in left if i not in taken]
    return fronts


def elite(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], size: int
          ) -> list[FrozenTrial]:
    """NSGA-II's survivors: the ``size`` best of ``trials`` by non-dominated rank, the
    last front cut by crowding distance (ties: the earlier in ``trials`` wins)."""
    values = maximised(trials, directions)
    chosen: list[int] = []
    for front in nondominated_fronts(values):
        if len(chosen) >= size:
            break
        if len(chosen) + len(front) > size:
            distance = crowding_distance(values[front])
            order = np.argsort(-distance, kind="stable")
            front = [front[i] for i in order[: size - len(chosen)]]
        chosen.extend(front)
    return [trials[i] for i in chosen]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class LineageNSGAIISampler(BaseSampler):
    """NSGA-II whose every draw is fixed by ``(seed, generation, slot)`` and whose state
    survives a kill (see the module docstring). :meth:`attach` gives it the study's
    storage URL, so it can store each trial's place as user attributes (search's
    ``open_study`` attaches it); unattached, the places live in :meth:`place` only."""

    def __init__(self, *, population_size: int = 50, seed: int | None = None,
                 crossover_prob: float = 0.9, mutation_prob: float | None = None,
                 swapping_prob: float = 0.5) -> None:
        if population_size < 2:
            raise ValueError(f"population_size must be at least 2, got {population_size}")
        for name, value in (("crossover_prob", crossover_prob), ("swapping_prob", swapping_prob),
                            ("mutation_prob", mutation_prob)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.population_size = population_size
        self.seed = (int(seed) if seed is not None
                     else int(np.random.SeedSequence().generate_state(1)[0]))
        self.crossover_prob, self.mutation_prob = crossover_prob, mutation_prob
        self.swapping_prob = swapping_prob
        self._places: dict[int, Place] = {}  # trial number -> place, this session's trials
        self._populations: dict[int, list[FrozenTrial]] = {}  # generation -> its parents
        self._store: RDBStorage | None = None
        self._study_name: str | None = None

    # -- where the places are written -----------------------------------------------------
    def attach(self, storage: RDBStorage, study_name: str) -> None:
        """Write each new trial's place to ``storage`` (the study's, opened by its URL)."""
        self._store, self._study_name = storage, study_name

    def place(self, number: int) -> Place | None:
        """The place this sampler gave trial ``number`` in this session (None: not its)."""
        return self._places.get(number)

    def _record(self, number: int, place: Place) -> None:
        if self._store is None or self._study_name is None:
            return
        study_id = self._store.get_study_id_from_name(self._study_name)
        trial_id = self._store.get_trial_id_from_study_id_trial_number(study_id, number)
        self._store.set_trial_user_attr(trial_id, GENERATION, place.generation)
        self._store.set_trial_user_attr(trial_id, SLOT, place.slot)
        if place.parents:
            self._store.set_trial_user_attr(trial_id, PARENTS,
                                              sorted(p.number for p in place.parents))

    # -- the study as places ------------------------------------------------------------
    def _occupied(self, study: optuna.Study) -> dict[tuple[int, int], FrozenTrial]:
        """(generation, slot) -> the trial holding it: every finished trial not cut short
        by a kill, and this session's trials still in flight."""
        held: dict[tuple[int, int], FrozenTrial] = {}
        unplaced: dict[int, list[FrozenTrial]] = {}
        for trial in study.get_trials(deepcopy=False):
            finished = trial.state in (TrialState.COMPLETE, TrialState.FAIL)
            if trial.user_attrs.get(INTERRUPTED) or not (
                    finished or (trial.state == TrialState.RUNNING
                                 and trial.number in self._places)):
                continue
            mine = self._places.get(trial.number)
            generation = trial.user_attrs.get(GENERATION, mine.generation if mine else None)
            if generation is None:
                continue  # not one of a lineage sampler's trials
            slot = trial.user_attrs.get(SLOT, mine.slot if mine else None)
            if slot is None:  # written before slots were recorded: by trial number
                unplaced.setdefault(int(generation), []).append(trial)
            else:
                held[(int(generation), int(slot))] = trial
        for generation, trials in unplaced.items():
            free = (s for s in range(self.population_size) if (generation, s) not in held)
            for trial, slot in zip(sorted(trials, key=lambda t: t.number), free):
                held[(generation, slot)] = trial
        return held

    def _next_place(self, held: dict[tuple[int, int], FrozenTrial]) -> tuple[int, int]:
        generation = 0
        while True:
            free = [s for s in range(self.population_size) if (generation, s) not in held]
            if free:
                return generation, free[0]
            generation += 1

    def parent_population(self, study: optuna.Study, generation: int,
                          held: dict[tuple[int, int], FrozenTrial] | None = None
                          ) -> list[FrozenTrial]:
        """The parents of ``generation``: the elite of generation − 1's parents and its
        complete trials, in slot order (empty for generation 0)."""
        held = self._occupied(study) if held is None else held
        population: list[FrozenTrial] = []
        for g in range(1, generation + 1):
            if g in self._populations:
                population = self._populations[g]
                continue
            previous = [held[(g - 1, s)] for s in range(self.population_size)
                        if (g - 1, s) in held]
            complete = [t for t in previous if t.state == TrialState.COMPLETE]
            population = self.survivors(population + complete, study.directions, g)
            if len(previous) == self.population_size and all(t.state.is_finished()
                                                             for t in previous):
                self._populations[g] = population  # fixed from now on
        return population

    def survivors(self, trials: list[FrozenTrial], directions: Sequence[StudyDirection],
                  generation: int) -> list[FrozenTrial]:
        """The parents of ``generation``, chosen from ``trials`` (generation − 1's parents,
        then its complete trials, in slot order): NSGA-II's :func:`elite`. A subclass that
        selects otherwise overrides this; a random draw it makes must come from
        :meth:`survivor_rng`, so a resumed search selects as the uninterrupted one did."""
        return elite(trials, directions, self.population_size)

    def survivor_rng(self, generation: int) -> np.random.Generator:
        """The draws of the survivor selection for ``generation``: seeded by (seed,
        generation) alone, so the same trials always give the same survivors."""
        return np.random.default_rng([self.seed, generation, _SURVIVORS])

    # -- Optuna's sampler hooks -----------------------------------------------------------
    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        held = self._occupied(study)
        generation, slot = self._next_place(held)
        parents: tuple[FrozenTrial, ...] = ()
        if generation > 0:
            population = self.parent_population(study, generation, held)
            rng = np.random.default_rng([self.seed, generation, slot, _TOURNAMENT])
            if len({t.number for t in population}) >= 2:
                first = self._tournament(study, population, rng)
                second = self._tournament(
                    study, [t for t in population if t.number != first.number], rng)
                parents = (first, second)
        place = Place(generation, slot, parents)
        self._places[trial.number] = place
        self._record(trial.number, place)

    def _tournament(self, study: optuna.Study, pool: list[FrozenTrial],
                    rng: np.random.Generator) -> FrozenTrial:
        first, second = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
        a, b = maximised([first, second], study.directions)
        if _dominates(a, b):
            return first
        if _dominates(b, a):
            return second
        return first if rng.random() < 0.5 else second

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        place = self._places.get(trial.number)
        if place is None or not place.parents:
            return {}
        first, second = place.parents
        return {name: dist for name, dist in sorted(first.distributions.items())
                if second.distributions.get(name) == dist}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        place = self._places.get(trial.number)
        if place is None or not place.parents or not search_space:
            return {}
        first, second = place.parents
        rng = np.random.default_rng([self.seed, place.generation, place.slot, _CROSSOVER])
        if rng.random() < self.crossover_prob:
            child = {name: (second if rng.random() < self.swapping_prob else first).params[name]
                     for name in search_space}
        else:
            source = first if rng.random() < 0.5 else second
            child = {name: source.params[name] for name in search_space}
        mutation = (self.mutation_prob if self.mutation_prob is not None
                    else 1.0 / max(1, len(child)))
        # a mutated gene is left out: Optuna then asks sample_independent for it
        return {name: value for name, value in child.items() if rng.random() >= mutation}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        place = self._places.get(trial.number) or Place(-1, trial.number)
        seed = _seed(self.seed, place.generation, place.slot, _INDEPENDENT,
                     zlib.crc32(param_name.encode()))
        return RandomSampler(seed=seed).sample_independent(study, trial, param_name,
                                                           param_distribution)

    def reseed_rng(self) -> None:
        """Nothing to reseed: every draw is seeded by its trial's place."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """Nothing: the trial's place was stored when it was asked."""

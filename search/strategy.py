"""The search strategy: an Optuna study driven by ask/tell, with lineage.

Samplers: ``nsga2`` (multi-objective, default), ``ga`` (NSGA-II on one objective: the
mean of the task estimates), ``cmaes`` and ``random`` (also on the mean). The study
lives in SQLite in the run directory (or any Optuna RDB URL), so a killed search
resumes: trials left RUNNING by a kill are marked FAIL and asked again.

Lineage: Optuna's NSGA-II builds a child from parents it picks itself and does not
say which. :class:`LineageNSGAIISampler` picks them instead — two binary tournaments
by Pareto dominance — hands exactly those two to Optuna's own child-generation
strategy (crossover + mutation, unchanged) and records their trial numbers on the
child as the user attribute ``parents``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import NSGAIISampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["LineageNSGAIISampler", "make_sampler", "open_study", "fail_interrupted", "PARENTS"]

PARENTS = "parents"
GENERATION = "generation"


def _dominates(a: FrozenTrial, b: FrozenTrial, directions: Sequence[StudyDirection]) -> bool:
    sign = [1 if d == StudyDirection.MAXIMIZE else -1 for d in directions]
    av = [s * v for s, v in zip(sign, a.values)]
    bv = [s * v for s, v in zip(sign, b.values)]
    return all(x >= y for x, y in zip(av, bv)) and any(x > y for x, y in zip(av, bv))


class LineageNSGAIISampler(NSGAIISampler):
    """NSGA-II that records each child's parents (see the module docstring)."""

    def _tournament(self, study: optuna.Study, pool: list[FrozenTrial]) -> FrozenTrial:
        rng = self._rng.rng
        first, second = pool[rng.choice(len(pool))], pool[rng.choice(len(pool))]
        if _dominates(first, second, study.directions):
            return first
        if _dominates(second, first, study.directions):
            return second
        return first if rng.rand() < 0.5 else second

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        generation = self.get_trial_generation(study, trial)
        study._storage.set_trial_user_attr(trial._trial_id, GENERATION, generation)
        population = self.get_parent_population(study, generation)
        if len(population) < 2:
            return {}
        first = self._tournament(study, population)
        second = self._tournament(study, [t for t in population if t.number != first.number])
        study._storage.set_trial_user_attr(
            trial._trial_id, PARENTS, sorted([first.number, second.number])
        )
        return self._child_generation_strategy(study, search_space, [first, second])


def make_sampler(
    name: str, *, population: int, seed: int, crossover_prob: float = 0.9,
    mutation_prob: float | None = None,
) -> optuna.samplers.BaseSampler:
    if name in ("nsga2", "ga"):
        return LineageNSGAIISampler(population_size=population, seed=seed,
                                    crossover_prob=crossover_prob, mutation_prob=mutation_prob)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, popsize=population,
                                            warn_independent_sampling=False)
    if name == "random":
        return RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def open_study(
    *, name: str, storage: str, sampler: optuna.samplers.BaseSampler, objectives: int
) -> optuna.Study:
    """Create or reopen the study (``objectives`` maximised values)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, load_if_exists=True,
        directions=["maximize"] * objectives,
    )


def fail_interrupted(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by a killed driver as FAIL (ask/tell has no heartbeat)."""
    numbers = []
    for trial in study.get_trials(deepcopy=False, states=[TrialState.RUNNING]):
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study.tell(trial.number, state=TrialState.FAIL)
        numbers.append(trial.number)
    return numbers

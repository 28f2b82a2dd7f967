"""The search strategy: an Optuna study driven by ask/tell, with lineage.

Samplers: ``nsga2`` (multi-objective, default), ``ga`` (NSGA-II on one objective: the
mean of the task estimates), ``cmaes`` and ``random`` (also on the mean), each a
:class:`SamplerKind` in the :data:`SAMPLERS` registry (a new one: a factory plus one
``SAMPLERS.register`` line, docs/extending.md). The study
lives in SQLite in the run directory (or any Optuna RDB URL), so a killed search
resumes: trials left RUNNING by a kill are marked FAIL and asked again.

Lineage: Optuna's NSGA-II builds a child from parents it picks itself and does not
say which. :class:`LineageNSGAIISampler` picks them instead — two binary tournaments
by Pareto dominance — hands exactly those two to Optuna's own child-generation
strategy (crossover + mutation, unchanged) and records their trial numbers on the
child as the user attribute ``parents``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import NSGAIISampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from merge3.errors import Merge3Error
from merge3.registry import Registry

__all__ = ["LineageNSGAIISampler", "SAMPLERS", "DEFAULT_SAMPLER", "SamplerKind", "make_sampler",
           "objective_count", "open_study", "fail_interrupted", "PARENTS"]

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


@dataclass(frozen=True)
class SamplerKind:
    """A search sampler: ``build(population=, seed=, crossover_prob=, mutation_prob=)``
    returns an Optuna sampler (a class taking those keywords will do); ``multi_objective``:
    it optimises one objective per task (else the mean of the task estimates)."""

    build: Callable[..., optuna.samplers.BaseSampler]
    multi_objective: bool = False
    description: str = ""


DEFAULT_SAMPLER = "nsga2"
SAMPLERS: Registry[SamplerKind] = Registry(
    "sampler", SamplerKind, default=DEFAULT_SAMPLER,
    expects="SamplerKind (SamplerKind(build, multi_objective=...))")


def _nsga2(*, population: int, seed: int, crossover_prob: float,
           mutation_prob: float | None) -> optuna.samplers.BaseSampler:
    return LineageNSGAIISampler(population_size=population, seed=seed,
                                crossover_prob=crossover_prob, mutation_prob=mutation_prob)


def _cmaes(*, population: int, seed: int, **_: Any) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(seed=seed, popsize=population,
                                        warn_independent_sampling=False)


def _random(*, seed: int, **_: Any) -> optuna.samplers.BaseSampler:
    return RandomSampler(seed=seed)


SAMPLERS.register("nsga2", SamplerKind(_nsga2, multi_objective=True,
                                       description="NSGA-II, one objective per task, lineage"))
SAMPLERS.register("ga", SamplerKind(_nsga2, description="NSGA-II on the mean, lineage"))
SAMPLERS.register("cmaes", SamplerKind(_cmaes, description="CMA-ES on the mean"))
SAMPLERS.register("random", SamplerKind(_random, description="random search on the mean"))


def make_sampler(
    name: str, *, population: int, seed: int, crossover_prob: float = 0.9,
    mutation_prob: float | None = None,
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of the registered sampler ``name`` (see :data:`SAMPLERS`)."""
    kind = SAMPLERS.get(name)
    sampler = kind.build(population=population, seed=seed, crossover_prob=crossover_prob,
                         mutation_prob=mutation_prob)
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise Merge3Error(f"Sampler {name!r} built {sampler!r}, not an Optuna sampler.",
                          fix="make its SamplerKind.build return an "
                              "optuna.samplers.BaseSampler.")
    return sampler


def objective_count(name: str, tasks: int) -> int:
    """How many objectives the study of sampler ``name`` has over ``tasks`` tasks: one per
    task for a multi-objective sampler with two or more tasks, else one (their mean)."""
    return tasks if SAMPLERS.get(name).multi_objective and tasks > 1 else 1


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

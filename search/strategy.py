"""The search strategy: an Optuna study driven by ask/tell, with lineage.

Samplers: ``nsga2`` and ``nsga3`` (multi-objective: one objective per task; NSGA-III,
search/nsga3.py, for many tasks), ``ga`` (NSGA-II on one objective: the mean of the task
estimates), ``scalar`` (NSGA-II on the mean normalised accuracy, search/normalise.py),
``cmaes`` and ``random`` (on the mean), each a :class:`SamplerKind` in the
:data:`SAMPLERS` registry (a new one: a factory plus one ``SAMPLERS.register`` line,
docs/extending.md). The study lives in SQLite in the run directory (or any Optuna RDB
URL), so a killed search resumes: trials left RUNNING by a kill are marked FAIL and asked
again.

Lineage and deterministic resume: :class:`~search.nsga2.LineageNSGAIISampler` (the
``nsga2``, ``ga`` and ``scalar`` samplers; ``nsga3``'s sampler is its subclass) gives
every trial a place (generation, slot), draws all its randomness from ``(seed,
generation, slot)`` and records the place and the child's two parents (trial numbers) as
the user attributes ``generation``, ``slot``, ``parents``; a resumed search re-asks an
interrupted trial in its slot and gets what the uninterrupted search asked there. Only
public Optuna APIs are used: the sampler writes through an ``optuna.storages.RDBStorage``
opened on the study's URL (:func:`open_study` attaches it).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.samplers import RandomSampler
from optuna.trial import TrialState

from merge3.errors import Merge3Error
from merge3.registry import Registry
from search.nsga2 import GENERATION, INTERRUPTED, PARENTS, SLOT, LineageNSGAIISampler

if TYPE_CHECKING:
    from search.prepare import SearchInputs

__all__ = ["LineageNSGAIISampler", "SAMPLERS", "DEFAULT_SAMPLER", "SamplerKind", "make_sampler",
           "objective_count", "study_values", "open_study", "fail_interrupted", "PARENTS",
           "GENERATION", "SLOT", "INTERRUPTED"]

# the storage URL of each study open_study opened (fail_interrupted needs it)
_URLS: weakref.WeakKeyDictionary[optuna.Study, str] = weakref.WeakKeyDictionary()


Scalarise = Callable[["SearchInputs"], Callable[[Sequence[float]], float]]


@dataclass(frozen=True)
class SamplerKind:
    """A search sampler: ``build(population=, seed=, crossover_prob=, mutation_prob=)``
    returns an Optuna sampler (a class taking those keywords will do); ``multi_objective``:
    it optimises one objective per task (else one value of the task estimates);
    ``scalarise`` (single-objective only): given the search's inputs, returns the function
    of the task estimates (in objective order) that the study is told — None: their plain
    mean."""

    build: Callable[..., optuna.samplers.BaseSampler]
    multi_objective: bool = False
    description: str = ""
    scalarise: Scalarise | None = None


DEFAULT_SAMPLER = "nsga2"
SAMPLERS: Registry[SamplerKind] = Registry(
    "sampler", SamplerKind, default=DEFAULT_SAMPLER,
    expects="SamplerKind (SamplerKind(build, multi_objective=...))")


def _nsga2(*, population: int, seed: int, crossover_prob: float,
           mutation_prob: float | None) -> optuna.samplers.BaseSampler:
    return LineageNSGAIISampler(population_size=population, seed=seed,
                                crossover_prob=crossover_prob, mutation_prob=mutation_prob)


def _nsga3(*, population: int, seed: int, crossover_prob: float,
           mutation_prob: float | None) -> optuna.samplers.BaseSampler:
    from search.nsga3 import LineageNSGAIIISampler

    return LineageNSGAIIISampler(population_size=population, seed=seed,
                                 crossover_prob=crossover_prob, mutation_prob=mutation_prob)


def _cmaes(*, population: int, seed: int, **_: Any) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(seed=seed, popsize=population,
                                        warn_independent_sampling=False)


def _random(*, seed: int, **_: Any) -> optuna.samplers.BaseSampler:
    return RandomSampler(seed=seed)


SAMPLERS.register("nsga2", SamplerKind(_nsga2, multi_objective=True,
                                       description="NSGA-II, one objective per task, lineage"))
SAMPLERS.register("nsga3", SamplerKind(
    _nsga3, multi_objective=True,
    description="NSGA-III (reference points), one objective per task, lineage"))
SAMPLERS.register("ga", SamplerKind(_nsga2, description="NSGA-II on the mean, lineage"))


def _normalised_mean(inputs: SearchInputs) -> Callable[[Sequence[float]], float]:
    from search.normalise import normalised_mean

    return normalised_mean(inputs)


SAMPLERS.register("scalar", SamplerKind(
    _nsga2, scalarise=_normalised_mean,
    description="NSGA-II on the mean normalised accuracy (estimate / the task's expert's)"))
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


def study_values(name: str, inputs: SearchInputs, *, multi: bool
                 ) -> Callable[[Sequence[float]], float | list[float]]:
    """What the study of sampler ``name`` is told for a candidate's task estimates (in
    ``inputs.objectives`` order): the estimates themselves when ``multi`` (one objective
    per task), else the sampler's :attr:`SamplerKind.scalarise` of them (default: the
    mean)."""
    if multi:
        return lambda values: [float(v) for v in values]
    scalarise = SAMPLERS.get(name).scalarise
    if scalarise is None:
        return lambda values: float(np.mean(values))
    return scalarise(inputs)


@lru_cache(maxsize=16)
def _rdb(url: str) -> optuna.storages.RDBStorage:
    """A second, plain handle on the study's RDB store (public methods only)."""
    return optuna.storages.RDBStorage(url)


def open_study(
    *, name: str, storage: str, sampler: optuna.samplers.BaseSampler, objectives: int
) -> optuna.Study:
    """Create or reopen the study (``objectives`` maximised values); a lineage sampler is
    attached to its store so it records each trial's place."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, load_if_exists=True,
        directions=["maximize"] * objectives,
    )
    _URLS[study] = storage
    if isinstance(sampler, LineageNSGAIISampler):
        sampler.attach(_rdb(storage), name)
    return study


def fail_interrupted(study: optuna.Study, storage: str | None = None) -> list[int]:
    """Mark trials left RUNNING by a killed driver as FAIL + ``interrupted`` (ask/tell has
    no heartbeat); their slots are asked again. ``storage``: the study's URL (default:
    the one :func:`open_study` opened it with)."""
    url = storage or _URLS.get(study)
    if url is None:
        raise Merge3Error(f"Study {study.study_name!r} was not opened by open_study, so its "
                          "storage URL is unknown.",
                          fix="pass it: fail_interrupted(study, storage=URL).")
    store = _rdb(url)
    study_id = store.get_study_id_from_name(study.study_name)
    numbers = []
    for trial in study.get_trials(deepcopy=False, states=[TrialState.RUNNING]):
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        store.set_trial_user_attr(trial_id, INTERRUPTED, True)
        study.tell(trial.number, state=TrialState.FAIL)
        numbers.append(trial.number)
    return numbers

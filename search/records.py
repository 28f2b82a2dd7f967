"""What a search knows about one candidate: the typed record of a finished Optuna trial.

The study is the source of truth. Each finished trial carries its genome as params and,
as user attributes, what the driver (search/loop.py) and the sampler
(search/strategy.py) wrote: the names below. :class:`TrialRecord` reads them back into
one typed value that MLflow tracking, the fronts, ``merge3 pareto``/``export``, the demo,
the benchmarks and the tests share.

``TrialRecord.to_json`` keeps the keys the untyped records had (``trial``, ``values``,
``stderr`` …): ``merge3 pareto --json`` and scripts that read it are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from search.pareto import pareto_mask
from search.strategy import GENERATION, PARENTS

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["TrialRecord", "finished_records", "front_of", "stored_trial", "GENERATION",
           "PARENTS", "RECIPE", "ESTIMATES", "STDERR", "ITEMS_EVALUATED", "WALL_SECONDS",
           "WORKER", "ATTEMPTS", "FAILURES", "ERROR", "RESCORED", "INTERRUPTED"]

# user attributes of a trial (GENERATION and PARENTS are the sampler's)
RECIPE = "recipe"  # the decoded genome: an ordinary merge recipe
ESTIMATES = "estimates"  # task -> estimated accuracy
STDERR = "stderr"  # task -> standard error of the estimate
ITEMS_EVALUATED = "items_evaluated"
WALL_SECONDS = "wall_seconds"
WORKER = "worker"  # host:pid@node of the worker that scored it
ATTEMPTS = "attempts"
FAILURES = "failures"  # errors of earlier attempts
ERROR = "error"  # why a failed candidate failed
RESCORED = "rescored"  # a close call scored on more items
INTERRUPTED = "interrupted"  # in flight at a kill: marked FAIL on resume, asked again


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """One finished (COMPLETE) or failed (FAIL) candidate of a search."""

    number: int  # the Optuna trial number (MLflow run ``trial-N``)
    state: str  # "COMPLETE" or "FAIL"
    genome: dict[str, float]  # gene name -> value (the trial's params)
    recipe: dict[str, Any] | None = None
    generation: int | None = None  # None: not recorded
    parents: tuple[int, ...] = ()  # parents' trial numbers (none in generation 0)
    estimates: dict[str, float] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    mean_estimate: float | None = None  # mean over the objectives: the single fitness
    items_evaluated: int | None = None
    wall_seconds: float | None = None
    worker: str = ""
    attempts: int | None = None
    failures: tuple[str, ...] = ()
    error: str | None = None
    rescored: bool = False

    @property
    def complete(self) -> bool:
        return self.state == "COMPLETE"

    @classmethod
    def from_trial(cls, trial: FrozenTrial, objectives: Sequence[str]) -> TrialRecord:
        """The record of a finished Optuna trial (``objectives``: the tasks whose
        estimates make ``mean_estimate``)."""
        attrs = trial.user_attrs
        estimates = {str(k): float(v) for k, v in attrs.get(ESTIMATES, {}).items()}
        generation = attrs.get(GENERATION)
        return cls(
            number=trial.number,
            state=trial.state.name,
            genome=dict(trial.params),
            recipe=attrs.get(RECIPE),
            generation=None if generation in (None, "") else int(generation),
            parents=tuple(int(p) for p in attrs.get(PARENTS) or ()),
            estimates=estimates,
            stderr={str(k): float(v) for k, v in attrs.get(STDERR, {}).items()},
            mean_estimate=(float(np.mean([estimates[t] for t in objectives]))
                           if estimates else None),
            items_evaluated=attrs.get(ITEMS_EVALUATED),
            wall_seconds=attrs.get(WALL_SECONDS),
            worker=str(attrs.get(WORKER, "")),
            attempts=attrs.get(ATTEMPTS),
            failures=tuple(attrs.get(FAILURES) or ()),
            error=attrs.get(ERROR),
            rescored=bool(attrs.get(RESCORED)),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (keys as ``merge3 pareto --json`` prints them)."""
        return {
            "trial": self.number, "state": self.state,
            "generation": self.generation, "parents": list(self.parents),
            "genome": dict(self.genome), "recipe": self.recipe,
            "values": dict(self.estimates), "stderr": dict(self.stderr),
            "mean_estimate": self.mean_estimate, "items_evaluated": self.items_evaluated,
            "wall_seconds": self.wall_seconds, "worker": self.worker,
            "attempts": self.attempts, "failures": list(self.failures),
            "error": self.error, "rescored": self.rescored,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        """The inverse of :meth:`to_json`."""
        return cls(
            number=int(data["trial"]), state=str(data["state"]),
            genome=dict(data.get("genome") or {}), recipe=data.get("recipe"),
            generation=data.get("generation"), parents=tuple(data.get("parents") or ()),
            estimates=dict(data.get("values") or {}), stderr=dict(data.get("stderr") or {}),
            mean_estimate=data.get("mean_estimate"),
            items_evaluated=data.get("items_evaluated"),
            wall_seconds=data.get("wall_seconds"), worker=str(data.get("worker", "")),
            attempts=data.get("attempts"), failures=tuple(data.get("failures") or ()),
            error=data.get("error"), rescored=bool(data.get("rescored")),
        )


def finished_records(study: optuna.Study, objectives: Sequence[str]) -> list[TrialRecord]:
    """Every finished candidate of ``study``, by trial number; trials a kill cut short
    (FAIL + ``interrupted``) are not candidates and are left out."""
    from optuna.trial import TrialState

    return [TrialRecord.from_trial(t, objectives)
            for t in study.get_trials(deepcopy=False,
                                      states=(TrialState.COMPLETE, TrialState.FAIL))
            if not t.user_attrs.get(INTERRUPTED)]


def stored_trial(study: optuna.Study, number: int, states: Iterable[Any] | None = None
                 ) -> FrozenTrial:
    """The stored state of trial ``number`` (a live ``optuna.Trial`` does not see what
    the sampler wrote to the storage, e.g. the parents)."""
    trials = study.get_trials(deepcopy=False, states=tuple(states) if states else None)
    return next(t for t in trials if t.number == number)


def front_of(records: Iterable[TrialRecord], objectives: Sequence[str]) -> list[TrialRecord]:
    """The Pareto front (all objectives maximised) among the complete records."""
    done = [r for r in records if r.complete]
    if not done:
        return []
    values = np.array([[r.estimates[t] for t in objectives] for r in done])
    return [r for r, keep in zip(done, pareto_mask(values)) if keep]

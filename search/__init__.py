"""merge3's evolutionary merge search: an Optuna study asked and told generation by
generation, candidates scored by Ray workers on IRT anchor items, every candidate an
MLflow run, a Pareto front at the end (docs/search.md; the data flow: docs/dataflow.md)::

    from search import load_config, run_search
    outcome = run_search(load_config("search.yaml"), "runs/s1")
    for record in outcome.front:              # TrialRecord: estimates, recipe, parents ...
        print(record.number, record.estimates)

Names load on first use, so ``import search`` (and every ``merge3`` verb) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.config import EvaluationSpec, SearchConfig, load_config, parse_config
    from search.display import print_front
    from search.fitness import Fitness, TaskScore
    from search.lineage import ancestry, plot_lineage
    from search.loop import SearchLoop
    from search.pareto import close_call, hypervolume, pareto_mask
    from search.prepare import SearchInputs, prepare
    from search.records import TrialRecord, finished_records, front_of
    from search.run import SearchFailedError, SearchOutcome, run_search
    from search.rundir import RunDirBusyError, RunDirLock, RunState, check_resume
    from search.strategy import LineageNSGAIISampler, make_sampler, open_study
    from search.tracking import Tracker, TrackingError
    from search.workers import CandidateResult, WorkerPool, WorkerSpec, init_ray

_LAZY = {
    "SearchConfig": "search.config", "EvaluationSpec": "search.config",
    "load_config": "search.config", "parse_config": "search.config",
    "run_search": "search.run", "SearchOutcome": "search.run",
    "SearchFailedError": "search.run",
    "SearchLoop": "search.loop",
    "SearchInputs": "search.prepare", "prepare": "search.prepare",
    "TrialRecord": "search.records", "finished_records": "search.records",
    "front_of": "search.records",
    "Fitness": "search.fitness", "TaskScore": "search.fitness",
    "pareto_mask": "search.pareto", "hypervolume": "search.pareto",
    "close_call": "search.pareto",
    "ancestry": "search.lineage", "plot_lineage": "search.lineage",
    "print_front": "search.display",
    "RunDirLock": "search.rundir", "RunDirBusyError": "search.rundir",
    "RunState": "search.rundir", "check_resume": "search.rundir",
    "LineageNSGAIISampler": "search.strategy", "make_sampler": "search.strategy",
    "open_study": "search.strategy",
    "Tracker": "search.tracking", "TrackingError": "search.tracking",
    "WorkerPool": "search.workers", "WorkerSpec": "search.workers",
    "CandidateResult": "search.workers", "init_ray": "search.workers",
}

__all__ = [
    "CandidateResult",
    "EvaluationSpec",
    "Fitness",
    "LineageNSGAIISampler",
    "RunDirBusyError",
    "RunDirLock",
    "RunState",
    "SearchConfig",
    "SearchFailedError",
    "SearchInputs",
    "SearchLoop",
    "SearchOutcome",
    "TaskScore",
    "Tracker",
    "TrackingError",
    "TrialRecord",
    "WorkerPool",
    "WorkerSpec",
    "ancestry",
    "check_resume",
    "close_call",
    "finished_records",
    "front_of",
    "hypervolume",
    "init_ray",
    "load_config",
    "make_sampler",
    "open_study",
    "pareto_mask",
    "parse_config",
    "plot_lineage",
    "prepare",
    "print_front",
    "run_search",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

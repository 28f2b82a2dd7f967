"""A search config made concrete and checked, before anything is written or started.

:func:`prepare` resolves the models (``zoo:…``, local directories, hub ids) and the task
files, builds the genome and the fitness (item banks loaded, anchors selected), and runs
the preflight checks (search/preflight.py) and the remote-code check, so that bad input
fails in seconds and leaves no run directory behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from merge3.errors import RecipeError
from merge3.genome import Genome
from merge3.models import resolve_model
from merge3.remote_code import check_remote_code
from search.config import SearchConfig
from search.fitness import Fitness
from search.preflight import check_banks, check_models

__all__ = ["SearchInputs", "prepare", "resolve_task"]


@dataclass(frozen=True)
class SearchInputs:
    """What a search works with: resolved paths, the genome and the fitness."""

    objectives: list[str]
    base_model: str | None  # resolved model directory
    experts: dict[str, str]  # expert name -> resolved model directory
    tasks: dict[str, str]  # objective task -> task YAML
    genome: Genome
    fitness: Fitness

    @property
    def evaluated_model(self) -> str:
        """The model the evaluators are built on (its weights are swapped per candidate)."""
        return self.base_model or next(iter(self.experts.values()))


def resolve_task(reference: str) -> str:
    """A task reference (``zoo:tasks/…`` or a file) as a task YAML path."""
    if reference.startswith("zoo:"):
        from merge3 import zoo

        return str(zoo.resolve(reference[4:]))
    if not Path(reference).exists():
        raise RecipeError(f"Task file {reference!r} does not exist.",
                          fix="point `tasks:` at task YAML files (see docs/formats.md).")
    return reference


def _task_items(tasks: dict[str, str]) -> dict[str, list[str]]:
    from evaluators.tasks import load_task

    return {name: [item.id for item in load_task(path).items] for name, path in tasks.items()}


def prepare(config: SearchConfig) -> SearchInputs:
    """Resolve and check ``config``: every expert tensor is read once, every item bank
    compared with its task."""
    objectives = config.objective_tasks
    base_model = str(resolve_model(config.base_model)) if config.base_model else None
    experts = {name: str(resolve_model(ref)) for name, ref in config.experts.items()}
    tasks = {name: resolve_task(ref) for name, ref in config.tasks.items()
             if name in objectives}
    # before anything reads the model: its own code must not run unless asked for
    check_remote_code(base_model or next(iter(experts.values())),
                      config.evaluation.trust_remote_code)
    genome = Genome(config.method, experts, config.genome, base_model=base_model,
                    fixed=config.fixed, dtype=config.dtype)
    check_models(base_model, experts)
    items = _task_items(tasks)
    limit = config.evaluation.limit
    spec = config.fitness
    fitness = Fitness(objectives, spec.estimator, spec.item_bank, spec.anchors,
                      spec.anchor_method, spec.seed, experts=experts,
                      rescore_items=spec.rescore_items if spec.estimator != "full" else 0,
                      limit={t: ids[:limit] for t, ids in items.items()} if limit else None)
    if spec.estimator != "full":
        check_banks(fitness.banks, items, spec.anchors, fitness.bank_dirs)
    if spec.adaptive is not None:  # the core is the anchors; top-ups by Fisher information
        fitness.make_adaptive(spec.adaptive, spec.rescore_items)
    return SearchInputs(objectives, base_model, experts, tasks, genome, fitness)

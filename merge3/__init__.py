"""merge3: model merging (task arithmetic, TIES, DARE, TSV, Iso, C2M3, MASS) and
a MERGE3-style evolutionary merge search with IRT fitness.

The library's front; names load on first use, so ``import merge3`` stays light::

    from merge3 import load_recipe, run_merge, METHODS
    run_merge(load_recipe("recipe.yaml"), "out/")          # = merge3 merge recipe.yaml out/

Layers: ``merge3`` is the bottom (checkpoints, methods, executor, recipes, genome, zoo);
``irt``, ``evaluators`` and ``search`` build on it, never the other way round.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # checkpoints
    "Checkpoint": "merge3.checkpoints",
    "CheckpointWriter": "merge3.checkpoint_writer",
    "DTYPES": "merge3.checkpoints",
    # recipes and models
    "Recipe": "merge3.recipe",
    "load_recipe": "merge3.recipe",
    "resolve_model": "merge3.models",
    # methods and the executor
    "METHODS": "merge3.methods",
    "MergeMethod": "merge3.methods",
    "merge_method": "merge3.methods",
    "get_method": "merge3.methods",
    "MergeJob": "merge3.executor",
    "MergeCache": "merge3.executor",
    "StateDict": "merge3.executor",
    "merge_job": "merge3.executor",
    "merge_tensor": "merge3.executor",
    "merge_model": "merge3.executor",
    "MergePlan": "merge3.merging",
    "plan_merge": "merge3.merging",
    "run_merge": "merge3.merging",
    # task vectors, genomes, registries
    "TaskVector": "merge3.task_vectors",
    "Genome": "merge3.genome",
    "Registry": "merge3.registry",
    # errors
    "Merge3Error": "merge3.errors",
    "CheckpointError": "merge3.errors",
    "RecipeError": "merge3.errors",
    "MergeError": "merge3.errors",
    "UnknownNameError": "merge3.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'merge3' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

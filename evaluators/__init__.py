"""merge3's evaluators: tasks as datasets + YAML, one Evaluator protocol, and the backends
of the BACKENDS registry: hf (transformers), vllm, mass (MASS routing).

Light names are imported eagerly; backends (torch, transformers, vLLM) load on first use::

    from evaluators import load_task, make_evaluator
    task = load_task("tasks/arith_gen.yaml")
    evaluator = make_evaluator("hf", "models/gpt2_a")
    results = evaluator.evaluate(task.items)       # one ItemResult per item
    evaluator.load_weights(merged_state_dict)      # in place, no reload
"""

from __future__ import annotations

from typing import Any

from evaluators.backends import BACKENDS, make_evaluator
from evaluators.errors import (
    EvaluatorError,
    ItemNotFoundError,
    ModelLoadError,
    TaskSpecError,
    WeightsError,
)
from evaluators.items import GenerationSpec, Item, ItemResult
from evaluators.logs import summarize, write_eval_logs
from evaluators.protocol import Evaluator
from evaluators.spec import TaskSpec
from evaluators.tasks import Task, load_task, load_tasks, read_item_ids, select_items

__all__ = [
    "BACKENDS",
    "Evaluator",
    "EvaluatorError",
    "GenerationSpec",
    "HFEvaluator",
    "Item",
    "ItemNotFoundError",
    "ItemResult",
    "MassEvaluator",
    "ModelLoadError",
    "Task",
    "TaskSpec",
    "TaskSpecError",
    "VLLMEvaluator",
    "WeightsError",
    "load_task",
    "load_tasks",
    "make_evaluator",
    "read_item_ids",
    "select_items",
    "summarize",
    "write_eval_logs",
]

_LAZY = {
    "HFEvaluator": "evaluators.hf",
    "MassEvaluator": "evaluators.mass",
    "VLLMEvaluator": "evaluators.vllm_backend",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evaluators' has no attribute {name!r}")

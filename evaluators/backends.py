"""The registry of evaluator backends (lazy: a backend's heavy imports happen on first use).

A backend is a class implementing the Evaluator protocol whose constructor takes
``(model_path, **options)``, or a factory function with that signature returning one.
Adding one is a module plus one ``BACKENDS.register`` line (docs/extending.md); ``merge3
eval --backend`` offers every registered name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluators.protocol import Evaluator
from merge3.errors import Merge3Error
from merge3.registry import Registry

__all__ = ["BACKENDS", "make_evaluator"]

_METHODS = ("evaluate", "load_weights", "close")


def _is_backend(entry: object) -> bool:
    """An Evaluator class, or a factory function (model_path, **options) -> Evaluator."""
    if isinstance(entry, type):
        return all(callable(getattr(entry, name, None)) for name in _METHODS)
    return callable(entry)


BACKENDS: Registry[Any] = Registry(
    "evaluator backend", _is_backend, default="hf",
    expects="Evaluator class (evaluate, load_weights, close) or factory "
            "(model_path, **options) -> Evaluator")
BACKENDS.register("hf", "evaluators.hf:HFEvaluator")
BACKENDS.register("vllm", "evaluators.vllm_backend:VLLMEvaluator")
BACKENDS.register("mass", "evaluators.mass:load_mass_evaluator")


def make_evaluator(backend: str, model_path: str | Path, **options: Any) -> Evaluator:
    """Build the named backend's evaluator for ``model_path`` (``options`` go to it)."""
    evaluator = BACKENDS.get(backend)(model_path, **options)
    if not isinstance(evaluator, Evaluator):
        missing = [name for name in _METHODS if not callable(getattr(evaluator, name, None))]
        raise Merge3Error(f"Evaluator backend {backend!r} built a {type(evaluator).__name__}, "
                          f"which lacks {', '.join(missing)} of the Evaluator protocol.",
                          fix="implement evaluate(items), load_weights(state) and close().")
    return evaluator

"""The registry of evaluator backends (lazy: a backend's heavy imports happen on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluators.protocol import Evaluator
from merge3.registry import Registry

__all__ = ["BACKENDS", "make_evaluator"]

BACKENDS: Registry[Any] = Registry("evaluator backend")
BACKENDS.register("hf", "evaluators.hf:HFEvaluator")
BACKENDS.register("vllm", "evaluators.vllm_backend:VLLMEvaluator")


def make_evaluator(backend: str, model_path: str | Path, **options: Any) -> Evaluator:
    """Build the named backend's evaluator for ``model_path`` (``options`` go to it)."""
    return BACKENDS.get(backend)(model_path, **options)

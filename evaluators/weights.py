"""Weights in place: copy a state dict into a resident torch model; ship one across processes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from evaluators.errors import WeightsError
from merge3.registry import did_you_mean

if TYPE_CHECKING:
    import torch

__all__ = ["copy_state_into", "state_to_bytes", "state_from_bytes"]


def _resolve(name: str, params: Mapping[str, torch.Tensor], prefix: str) -> str | None:
    """Match a checkpoint name to a model name, tolerating the base-model prefix."""
    if name in params:
        return name
    if prefix and name.startswith(prefix + ".") and name[len(prefix) + 1 :] in params:
        return name[len(prefix) + 1 :]
    if prefix and f"{prefix}.{name}" in params:
        return f"{prefix}.{name}"
    return None


def copy_state_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> int:
    """Copy every tensor of ``state`` into the same-named parameter/buffer of ``model``.

    Casts to the model's dtype and device. Unknown names and shape mismatches raise
    ``WeightsError`` before anything is written, so a bad state leaves the model intact.
    Tied weights (e.g. GPT-2's ``lm_head`` and ``wte``) share storage, so one copy updates
    both. Returns the number of tensors copied.
    """
    import torch

    params = dict(model.named_parameters(remove_duplicate=False))
    params.update(dict(model.named_buffers(remove_duplicate=False)))
    prefix = getattr(model, "base_model_prefix", "") or ""
    plan = []
    for name, tensor in state.items():
        target = _resolve(name, params, prefix)
        if target is None:
            raise WeightsError(
                f"Tensor {name!r} of the new weights is not in the resident model."
                f"{did_you_mean(name, list(params))}",
                fix="pass a state dict of the same architecture (Hugging Face names).",
            )
        if tuple(params[target].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"Tensor {name!r} has shape {tuple(tensor.shape)}, the resident model's "
                f"{target!r} has {tuple(params[target].shape)}.",
                fix="merge models of the same architecture and size.",
            )
        plan.append((params[target], tensor))
    with torch.no_grad():
        for param, tensor in plan:
            param.copy_(tensor)
    return len(plan)


def state_to_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """A state dict as one safetensors byte blob (tensors made contiguous, on the CPU)."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous() for k, v in state.items()})


def state_from_bytes(blob: bytes) -> dict[str, torch.Tensor]:
    """Inverse of ``state_to_bytes``."""
    from safetensors.torch import load

    return load(blob)

"""Weights in place: copy a state dict (or a stream of tensors) into a resident torch model;
ship one across processes in bounded chunks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from evaluators.errors import WeightsError
from merge3.registry import did_you_mean

if TYPE_CHECKING:
    from typing import TypeAlias

    import torch

    # What ``Evaluator.load_weights`` takes: a state dict, or (name, tensor) pairs streamed
    # one at a time (a candidate merge as the search's workers build it).
    Weights: TypeAlias = Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]

__all__ = ["copy_state_into", "chunked", "state_to_bytes", "state_from_bytes"]


def _resolve(name: str, params: Mapping[str, torch.Tensor], prefix: str) -> str | None:
    """Match a checkpoint name to a model name, tolerating the base-model prefix."""
    if name in params:
        return name
    if prefix and name.startswith(prefix + ".") and name[len(prefix) + 1 :] in params:
        return name[len(prefix) + 1 :]
    if prefix and f"{prefix}.{name}" in params:
        return f"{prefix}.{name}"
    return None


def _target(name: str, tensor: torch.Tensor, params: Mapping[str, torch.Tensor],
            prefix: str) -> torch.Tensor:
    """The resident parameter a named tensor goes into; a clear error when there is none."""
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
    return params[target]


def copy_state_into(model: torch.nn.Module,
                    state: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
                    ) -> int:
    """Copy every tensor of ``state`` into the same-named parameter/buffer of ``model``.

    Casts to the model's dtype and device. Tied weights (e.g. GPT-2's ``lm_head`` and
    ``wte``) share storage, so one copy updates both. Returns the number of tensors copied.

    A mapping is checked whole before anything is written (unknown names and shape
    mismatches raise ``WeightsError`` and leave the model intact). An iterable of
    ``(name, tensor)`` pairs -- a merge streamed tensor by tensor -- is copied as it comes,
    each tensor checked before its copy, so no more than one tensor is held beside the
    model; an error mid-stream leaves the model partly written, to be overwritten by
    the next full stream.
    """
    import torch

    params = dict(model.named_parameters(remove_duplicate=False))
    params.update(dict(model.named_buffers(remove_duplicate=False)))
    prefix = getattr(model, "base_model_prefix", "") or ""
    if isinstance(state, Mapping):
        plan = [(_target(name, tensor, params, prefix), tensor) for name, tensor in state.items()]
        with torch.no_grad():
            for param, tensor in plan:
                param.copy_(tensor)
        return len(plan)
    count = 0
    with torch.no_grad():
        for name, tensor in state:
            _target(name, tensor, params, prefix).copy_(tensor)
            count += 1
    return count


def chunked(state: Iterable[tuple[str, torch.Tensor]], max_bytes: int
            ) -> Iterator[dict[str, torch.Tensor]]:
    """Group a stream of named tensors into state dicts of at most ``max_bytes`` (a single
    larger tensor makes a chunk of its own)."""
    chunk: dict[str, torch.Tensor] = {}
    size = 0
    for name, tensor in state:
        nbytes = tensor.numel() * tensor.element_size()
        if chunk and size + nbytes > max_bytes:
            yield chunk
            chunk, size = {}, 0
        chunk[name] = tensor
        size += nbytes
    if chunk:
        yield chunk


def state_to_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """A state dict as one safetensors byte blob (tensors made contiguous, on the CPU)."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous() for k, v in state.items()})


def state_from_bytes(blob: bytes) -> dict[str, torch.Tensor]:
    """Inverse of ``state_to_bytes``."""
    from safetensors.torch import load

    return load(blob)

"""A merge method's whole-model pass (``MergeMethod.model_pass``), run by ``merge_model``.

Some methods need one number over the whole model before any tensor is merged, such as
FusionBench's TIES threshold (the k-th largest |τ| of the flattened model) or PCB's
clamping quantiles. The pass streams the model tensor by tensor, as the merge does: it
holds one tensor of each input at a time, so its memory is that of the merge itself
plus whatever the method accumulates (for a k-th value, a 65,536-bin histogram per
model, ``merge3.methods.model_select``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from merge3.errors import RecipeError
from merge3.executor import (
    MergeCache,
    MergeJob,
    TensorSource,
    _label,
    check_finite,
    layer_position,
)
from merge3.recipe import resolve_parameter

__all__ = ["run_model_pass"]


def run_model_pass(job: MergeJob, base: TensorSource | None, reference: TensorSource,
                inputs: Sequence[TensorSource], names: list[str],
                device: torch.device | str | None, cache: MergeCache | None) -> Any:
    """Run the method's whole-model pass over every floating tensor of ``names``."""
    method = job.method
    floats = [n for n in names if reference.get(n).is_floating_point()]

    def stream() -> Iterator[tuple[str, list[torch.Tensor], torch.Tensor | None]]:
        for name in floats:
            ref = reference.get(name)
            work = torch.float64 if ref.dtype == torch.float64 else torch.float32
            dev = device or ref.device
            tensors = [(ref if src is reference else src.get(name)).to(dev, work)
                       for src in inputs]
            for x, src in zip(tensors, inputs):
                check_finite(x, name, _label(src))
            yield name, tensors, None if base is None else ref.to(dev, work)

    def setting(key: str) -> Any:
        """``key``'s value, which must be the same for every tensor of the model."""
        first: tuple[str, Any] | None = None
        for name in floats:
            t = layer_position(name, job.num_layers)
            value = ([resolve_parameter(s.get(key, method.per_model[key]), name, t)
                      for s in job.input_settings] if key in method.per_model
                     else resolve_parameter(job.global_settings[key], name, t))
            if first is None:
                first = (name, value)
            elif value != first[1]:
                raise RecipeError(
                    f"{method.name}: {key} must hold for the whole model here, but tensor "
                    f"{first[0]!r} gets {first[1]!r} and {name!r} gets {value!r}.",
                    fix=f"give {key} one value per model (no gradient or filter), or use "
                        "trim_scope: tensor.")
        return None if first is None else first[1]

    memo = {} if cache is None else cache.model_memo.setdefault(method.name, {})
    return method.model_pass(stream, setting, memo)

"""REPAIR: renormalise a merged network's hidden units to the endpoints' statistics.

Jordan, Sedghi, Saukh, Entezari & Neyshabur, "REPAIR: REnormalizing Permuted
Activations for Interpolation Repair", ICLR 2023. Averaging aligned networks shrinks
the variance of hidden pre-activations ("variance collapse"); REPAIR measures, on data,
each channel's mean and standard deviation in every (aligned) endpoint, takes their
average as the target, and rescales the merged layer so that its outputs match:
``z' = (z − μ_merged) · σ_target / σ_merged + μ_target``. For an affine layer this folds
into its weight rows and bias. Layers are corrected in order, since each correction
changes the statistics downstream.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from merge3.errors import MergeError

__all__ = ["channel_statistics", "repair"]


@torch.no_grad()
def channel_statistics(
    model: nn.Module, inputs: torch.Tensor, layers: Sequence[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel (mean, std) of each layer's output on ``inputs`` (channels last)."""
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise MergeError(
            f"REPAIR layers {missing} are not modules of the model.",
            fix=f"choose among its modules, e.g. {list(modules)[1:6]}.",
        )
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out.detach())
        )
        for name in layers
    ]
    try:
        model.eval()
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    stats = {}
    for name in layers:
        flat = outputs[name].reshape(-1, outputs[name].shape[-1]).to(torch.float64)
        stats[name] = (flat.mean(0), flat.std(0, unbiased=False))
    return stats


@torch.no_grad()
def repair(
    merged: nn.Module,
    endpoints: Sequence[nn.Module],
    inputs: torch.Tensor,
    layers: Sequence[str],
    eps: float = 1e-5,
) -> nn.Module:
    """A copy of ``merged`` whose ``layers`` (affine, output channel on axis 0 of their
    ``weight``) have the endpoints' average per-channel mean and std on ``inputs``.

    ``endpoints`` must already be aligned to the merged model (same unit order).
    """
    targets = [channel_statistics(model, inputs, layers) for model in endpoints]
    repaired = copy.deepcopy(merged)
    modules = dict(repaired.named_modules())
    for name in layers:
        module = modules[name]
        if not isinstance(getattr(module, "weight", None), torch.Tensor) or module.bias is None:
            raise MergeError(
                f"REPAIR layer {name!r} has no weight and bias to rescale.",
                fix="list affine layers (nn.Linear with bias) whose outputs are hidden units.",
            )
        target_mean = torch.stack([t[name][0] for t in targets]).mean(0)
        target_std = torch.stack([t[name][1] for t in targets]).mean(0)
        mean, std = channel_statistics(repaired, inputs, [name])[name]
        scale = target_std / (std + eps)
        weight = module.weight.to(torch.float64)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        module.weight.copy_((weight * scale.reshape(shape)).to(module.weight.dtype))
        bias = (module.bias.to(torch.float64) - mean) * scale + target_mean
        module.bias.copy_(bias.to(module.bias.dtype))
    return repaired

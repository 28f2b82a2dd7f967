"""NearSwap: take the other model's value where it is near the base's.

Follows mergekit 0.1.5 (``mergekit/merge_methods/nearswap.py``; the method of
alchemonaut's QuartetAnemoi-70B-t0.0001): per entry, w = clamp(t/|θ_0 − θ_1|, 0, 1)
(the difference floored at 1e-6) and θ = w·θ_1 + (1 − w)·θ_0 — entries that differ by
at most t are swapped, larger differences move towards θ_1 by t/|Δ|.
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method

__all__ = ["nearswap"]


@merge_method(
    "nearswap",
    pretty_name="NearSwap",
    reference="https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
    min_models=1,
    max_models=1,
    elementwise=True,
    ranges={"t": (0.0, None)},
)
def nearswap(tensors: list[torch.Tensor], base: torch.Tensor, *,
             t: float = 0.0001) -> torch.Tensor:
    """Interpolate each entry towards the model by t/|θ_0 − θ_1| (at most all the way).

    mergekit requires ``t``; merge3 defaults it to 0.0001, the reference model's value.
    """
    other = tensors[0]
    weight = (t / (base - other).abs().clamp(min=1e-6)).clamp(min=0, max=1)
    return weight * other + (1 - weight) * base

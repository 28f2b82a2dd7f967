"""Passthrough: copy one model's tensors, optionally scaled per tensor.

Follows mergekit 0.1.5 (``mergekit/merge_methods/passthrough.py``). With ``slices:``
(layer ranges of several models stacked, "frankenmerges") each output tensor comes
from one source model's layer; see :mod:`merge3.slices`. ``scale`` (per model, usually
with filters, e.g. ``[{filter: o_proj, value: 0.5}, {value: 1}]``) multiplies the tensor.
"""

from __future__ import annotations

import math

import torch

from merge3.methods.base import merge_method

__all__ = ["passthrough"]


@merge_method(
    "passthrough",
    pretty_name="Passthrough",
    reference="https://github.com/arcee-ai/mergekit/blob/main/docs/merge_methods.md",
    base="unused",
    per_model={"scale": 1.0},
    max_models=1,
    elementwise=True,
    ranges={"scale": (-math.inf, math.inf)},  # any number, checked to be one at parse time
)
def passthrough(tensors: list[torch.Tensor], *, scale: list[float]) -> torch.Tensor:
    """The model's tensor times ``scale`` (mergekit: no scale given means 1)."""
    factor = float(scale[0])
    return tensors[0].clone() if factor == 1.0 else tensors[0] * factor

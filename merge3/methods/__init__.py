"""Merge methods: one module per family, one registry (``METHODS``)."""

from __future__ import annotations

from merge3.methods import (  # noqa: F401
    alignment,
    arcee_fusion,
    cart,
    consensus,
    della,
    iso,
    karcher,
    linear,
    magmax,
    model_stock,
    multislerp,
    nearswap,
    nuslerp,
    passthrough,
    pcb,
    ram,
    sce,
    slerp,
    task_arithmetic,
    tsv,
    wudi,
)
from merge3.methods.base import METHODS, MergeMethod, merge_method
from merge3.methods.svc import register_calibrated

register_calibrated()  # svc_<method> for every method above that needs a base

__all__ = ["METHODS", "MergeMethod", "merge_method", "get_method"]


def get_method(name: str) -> MergeMethod:
    """The registered method ``name`` (raises with a "did you mean" on a typo)."""
    return METHODS.get(name)

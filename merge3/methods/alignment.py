"""Align, then average: C²M³, Git Re-Basin and MergeMany as recipe merge methods.

Permutation alignment needs whole models, so these methods are the one exception to
tensor-by-tensor streaming: the executor loads every input, aligns them into one frame
(``merge3.alignment``: a permutation spec inferred from the architecture), then merges
tensor by tensor with a (per-layer, per-model) weighted average of the aligned models.
A search over per-layer mixing weights aligns once and reuses the aligned models.
"""

from __future__ import annotations

import torch

from merge3.methods.base import merge_method
from merge3.methods.linear import linear

_PAPERS = {
    "c2m3": ("C²M³ (cycle-consistent alignment)", "https://arxiv.org/abs/2405.17897"),
    "rebasin": ("Git Re-Basin (weight matching)", "https://arxiv.org/abs/2209.04836"),
    "mergemany": ("MergeMany (Re-Basin to the others' mean)", "https://arxiv.org/abs/2209.04836"),
}


def aligned_average(
    tensors: list[torch.Tensor],
    *,
    weight: list[float],
    normalize: bool = True,
    max_iter: int = 200,
    anchor: int = -1,
    seed: int = 0,
) -> torch.Tensor:
    """Σ w_i θ_i / Σ w_i of aligned models (``max_iter``, ``anchor`` (−1: none) and
    ``seed`` configure the alignment, which the executor runs first)."""
    return linear(tensors, weight=weight, normalize=normalize)


for _name, (_pretty, _reference) in _PAPERS.items():
    merge_method(_name, pretty_name=_pretty, reference=_reference, base="unused",
                 per_model={"weight": 1.0}, min_models=2, align=_name)(aligned_average)


def align_state_dicts(
    method: str, state_dicts: list[dict[str, torch.Tensor]], *, max_iter: int = 200,
    anchor: int = -1, seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """The inputs permuted into one common frame by the alignment method ``method``
    (merge3.alignment.ALIGNMENTS); each method gets the options it takes."""
    from merge3.alignment.merge import align_models, alignment_options
    from merge3.alignment.spec import infer_spec

    spec = infer_spec(state_dicts[0])
    given = {"seed": seed, "max_iter": max_iter, "anchor": None if anchor < 0 else anchor}
    accepted = alignment_options(method)
    options = {k: v for k, v in given.items() if k in accepted}
    return align_models(state_dicts, spec, method=method, **options).aligned

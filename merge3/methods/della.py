"""DELLA: magnitude-ranked random pruning of task vectors (Deep et al., 2024).

Follows mergekit 0.1.5 (``mergekit/sparsify.py: della_magprune`` and
``merge_methods/generalized_task_arithmetic.py``): within each row of a task vector
τ_i = θ_i − θ_0 (along axis 1; a 1-D tensor is one row), the entries are ranked by |τ|;
entry r of n (ascending) is kept with probability p_r = (density − ε) + 2ε·(r − 1)/(n − 1),
so large entries survive more often and the mean keep rate is ``density``. With
``rescale`` the survivors are scaled so the pruned vector keeps τ_i's L1 norm (mergekit's
``rescale_norm=l1``; the paper scales entry by entry by 1/p_r). The pruned vectors are
weighted and combined as in TIES (``della``: sign election, disjoint mean) or as task
arithmetic (``della_linear``), by :func:`merge3.methods.task_arithmetic.combine_task_vectors`.

Random draws: one ``torch.bernoulli`` per model whose density is below 1, in model order,
from the tensor's generator (seeded per tensor by the recipe's ``seed``). mergekit makes
the same calls on torch's global generator, so the two agree draw for draw given the same
generator state at a tensor; over a whole model mergekit's state at each tensor depends on
its task order, so there the two agree in distribution.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from merge3.errors import RecipeError
from merge3.methods.base import merge_method
from merge3.methods.sparsify import Trim
from merge3.methods.task_arithmetic import combine_task_vectors

__all__ = ["della_keep_probabilities", "della_trim", "della_prune", "della", "della_linear"]

_RESCALE_EPS = 1e-7  # mergekit's rescaled_masked_tensor: no rescaling below this norm


def della_keep_probabilities(delta: torch.Tensor, density: float,
                             epsilon: float) -> torch.Tensor:
    """Each entry's keep probability, by its |τ| rank along axis 1 (1-D: one row).

    Shape: ``delta`` with a leading axis added when it is 1-D. Ranks come from the same
    two argsorts mergekit uses, so entries of equal magnitude rank alike in both.
    """
    rows = delta.unsqueeze(0) if delta.dim() < 2 else delta
    order = torch.argsort(rows.abs(), dim=1, descending=False)
    ranks = order.argsort(dim=1).to(rows.dtype) + 1
    low = ranks.min(dim=1, keepdim=True).values
    high = ranks.max(dim=1, keepdim=True).values
    # A row of one entry has no spread of ranks (mergekit: 0/0, a NaN probability that
    # torch.bernoulli refuses): give it the mean keep rate.
    spread = ((ranks - low) / (high - low)).clamp(0, 1).nan_to_num(0.5)
    return (density - epsilon) + spread * 2 * epsilon


def della_trim(delta: torch.Tensor, density: float, epsilon: float,
               generator: torch.Generator | None, rescale: bool = True,
               *, name: str = "") -> Trim:
    """Which entries of τ DELLA's MagPrune keeps (one Bernoulli draw), and the L1
    rescaling of the survivors when ``rescale``."""
    if density >= 1:
        return Trim()
    if density <= 0:
        return Trim(torch.zeros_like(delta, dtype=torch.bool))
    if density + epsilon >= 1 or density - epsilon <= 0:
        raise RecipeError(
            f"della: density ± epsilon must lie in (0, 1) (tensor {name!r}: density "
            f"{density:g}, epsilon {epsilon:g}).",
            fix="lower epsilon, or move density away from 0 and 1 (mergekit refuses the "
                "same values).")
    probabilities = della_keep_probabilities(delta, density, epsilon)
    keep = torch.bernoulli(probabilities, generator=generator).reshape(delta.shape).bool()
    if not rescale:
        return Trim(keep)
    before, after = delta.abs().sum(), (delta * keep).abs().sum()
    if before < _RESCALE_EPS or after < _RESCALE_EPS:
        return Trim(keep)
    return Trim(keep, scale=before / after)


def della_prune(delta: torch.Tensor, density: float, epsilon: float,
                generator: torch.Generator | None, rescale: bool = True,
                *, name: str = "") -> torch.Tensor:
    """τ after DELLA's MagPrune (a new tensor, ``delta``'s shape)."""
    return della_trim(delta, density, epsilon, generator, rescale, name=name).apply(
        delta.clone())


def _register(name: str, pretty_name: str, *, sign_consensus: bool, normalize: bool,
              summary: str) -> Callable[..., torch.Tensor]:
    """Register one of the two DELLA methods (they differ in the combination only)."""

    def merge(tensors: list[torch.Tensor], base: torch.Tensor, *, weight: list[float],
              density: list[float], epsilon: list[float],
              generator: torch.Generator | None = None, name: str = "",
              normalize: bool = normalize, rescale: bool = True, lambda_: float = 1.0,
              int8_mask: bool = False) -> torch.Tensor:
        return combine_task_vectors(
            tensors, base, weight,
            sparsify=lambda d, i: della_trim(d, float(density[i]), float(epsilon[i]),
                                             generator, rescale, name=name),
            sign_consensus=sign_consensus, normalize=normalize, lambda_=lambda_)

    merge.__name__ = merge.__qualname__ = name
    merge.__doc__ = summary
    merge_method(
        name, pretty_name=pretty_name, reference="https://arxiv.org/abs/2406.11617",
        per_model={"weight": 1.0, "density": 1.0, "epsilon": 0.15}, masks=True,
        ranges={"epsilon": (0.0, 1.0)},
    )(merge)
    return merge


della = _register(
    "della", "DELLA (TIES)", sign_consensus=True, normalize=True,
    summary="DELLA MagPrune, then TIES sign election and disjoint mean (mergekit's "
            "``della``; ``int8_mask`` is accepted and changes nothing).")
della_linear = _register(
    "della_linear", "DELLA (task arithmetic)", sign_consensus=False, normalize=False,
    summary="DELLA MagPrune, then task arithmetic (mergekit's ``della_linear``).")

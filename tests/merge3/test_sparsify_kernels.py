"""Selection-based trimming keeps exactly the entries the sort-based definition keeps
(mergekit's: ``argsort(|τ|, descending=True)[:k]``; breadcrumbs: an ascending ``sort``)."""

from __future__ import annotations

import pytest
import torch

from merge3.methods.sparsify import magnitude_mask, outlier_mask


def _by_argsort(delta: torch.Tensor, density: float) -> torch.Tensor:
    n = delta.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.argsort(delta.abs().reshape(-1), descending=True)[:max(1, int(density * n))]] = True
    return keep.reshape(delta.shape)


def _by_sort(delta: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    n = delta.numel()
    keep_n, top_n = int(density * n), int(gamma * n)
    bottom_n = max(0, n - keep_n - top_n)
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.sort(delta.abs().reshape(-1)).indices[bottom_n:bottom_n + keep_n]] = True
    return keep.reshape(delta.shape)


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "coarse"])
def test_selection_keeps_the_sorts_entries(kind):
    generator = torch.Generator().manual_seed(7)
    for _ in range(60):
        n = int(torch.randint(1, 4000, (1,), generator=generator))
        delta = torch.randn(n, generator=generator)
        if kind == "bfloat16":  # many equal magnitudes: the tie path
            delta = delta.bfloat16().float()
        elif kind == "coarse":
            delta = torch.round(delta * 2) / 2
        density = float(torch.rand(1, generator=generator))
        gamma = 0.3 * float(torch.rand(1, generator=generator))
        assert torch.equal(magnitude_mask(delta, density), _by_argsort(delta, density))
        assert torch.equal(outlier_mask(delta, density, gamma), _by_sort(delta, density, gamma))


def test_a_matrix_keeps_its_shape_and_count():
    delta = torch.randn(64, 48, generator=torch.Generator().manual_seed(1))
    mask = magnitude_mask(delta, 0.25)
    assert mask.shape == delta.shape and int(mask.sum()) == int(0.25 * delta.numel())
    assert delta.abs()[mask].min() >= delta.abs()[~mask].max()

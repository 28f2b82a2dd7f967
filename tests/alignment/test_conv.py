"""Specs are not MLP-only: a small CNN (4-D kernels, inner product over trailing axes)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from merge3.alignment import (
    PermutationSpec,
    apply_permutations,
    frank_wolfe_synchronized_matching,
    random_permutations,
    to_numpy,
    weight_matching,
)

SPEC = PermutationSpec({
    "0.weight": ("P0", None, None, None), "0.bias": ("P0",),
    "2.weight": ("P1", "P0", None, None), "2.bias": ("P1",),
    "6.weight": (None, "P1"),
})


def _cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10)).eval()


def test_cnn_permutation_invariance_and_planted_recovery() -> None:
    model = _cnn(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # loading reuses storage
    planted = random_permutations(SPEC.sizes(state), seed=5)
    permuted = apply_permutations(state, SPEC, planted)
    x = torch.rand(2, 3, 9, 9)
    with torch.no_grad():
        before = model(x)
        model.load_state_dict(permuted)
        torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-5)

    found = weight_matching(SPEC, to_numpy(state, SPEC), to_numpy(permuted, SPEC))
    realigned = apply_permutations(permuted, SPEC, found)
    assert all(torch.equal(realigned[k], state[k]) for k in state)

    # two models: model 0 is anchored by default (C²M³'s pairwise Frank-Wolfe)
    pair = [to_numpy(state, SPEC), to_numpy(permuted, SPEC)]
    for anchor in (None, 1):
        result = frank_wolfe_synchronized_matching(pair, SPEC, anchor=anchor)
        for perm_id, perm in planted.items():
            np.testing.assert_array_equal(result.pairwise(1, 0)[perm_id], perm)

"""Git Re-Basin weight matching and MergeMany recover planted permutations exactly."""

from __future__ import annotations

import numpy as np
import torch

from merge3.alignment import (
    apply_permutations,
    invert_permutation,
    merge_many,
    mergemany_merge,
    random_permutations,
    rebasin_merge,
    to_numpy,
    weight_matching,
)
from merge3.alignment.weight_matching import matching_objective
from merge3.zoo.digits import DigitsConfig, build_model, digits_spec, evaluate

CONFIG = DigitsConfig(hidden=32, depth=3, epochs=15)


def test_planted_permutation_recovered(digits_state_dicts) -> None:
    spec = digits_spec(CONFIG)
    state = digits_state_dicts[0]
    planted = random_permutations(spec.sizes(state), seed=3)
    permuted = apply_permutations(state, spec, planted)
    found = weight_matching(spec, to_numpy(state, spec), to_numpy(permuted, spec))
    for perm_id, perm in planted.items():
        # permuted[i] = state[planted[i]], so aligning it back needs the inverse
        np.testing.assert_array_equal(found[perm_id], invert_permutation(perm))
    realigned = apply_permutations(permuted, spec, found)
    for name, value in state.items():
        assert torch.equal(realigned[name], value), name


def test_matching_increases_similarity(digits_state_dicts) -> None:
    spec = digits_spec(CONFIG)
    a, b = (to_numpy(sd, spec) for sd in digits_state_dicts[:2])
    perms = weight_matching(spec, a, b)
    before = matching_objective(a, b, spec)
    after = matching_objective(a, apply_permutations(b, spec, perms), spec)
    assert after > before + 0.1 * abs(before)


def test_merge_many_on_planted_copies_is_lossless(digits_state_dicts) -> None:
    spec = digits_spec(CONFIG)
    state = digits_state_dicts[1]
    copies = [state] + [
        apply_permutations(state, spec, random_permutations(spec.sizes(state), seed=s))
        for s in (11, 12, 13)
    ]
    perms = merge_many(spec, [to_numpy(sd, spec) for sd in copies])
    aligned = [apply_permutations(sd, spec, p) for sd, p in zip(copies, perms)]
    for other in aligned[1:]:
        for name in state:
            assert torch.equal(other[name], aligned[0][name]), name


def test_rebasin_and_mergemany_beat_naive(digits_state_dicts, digits_data) -> None:
    spec = digits_spec(CONFIG)
    accuracies = {}
    for name, merge in (("rebasin", rebasin_merge), ("mergemany", mergemany_merge)):
        model = build_model(CONFIG)
        model.load_state_dict(merge(digits_state_dicts, spec).merged)
        accuracies[name] = evaluate(model, digits_data.x_test, digits_data.y_test)[0]
    naive = build_model(CONFIG)
    naive.load_state_dict({k: torch.stack([sd[k] for sd in digits_state_dicts]).mean(0)
                           for k in digits_state_dicts[0]})
    naive_accuracy = evaluate(naive, digits_data.x_test, digits_data.y_test)[0]
    assert accuracies["rebasin"] > naive_accuracy + 0.2
    assert accuracies["mergemany"] > naive_accuracy + 0.2

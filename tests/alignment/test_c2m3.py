"""C²M³: cycle consistency, planted permutations, monotone Frank-Wolfe, merge quality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from merge3.alignment import (
    apply_permutations,
    c2m3_merge,
    frank_wolfe_synchronized_matching,
    naive_merge,
    permutation_matrix,
    random_permutations,
    to_numpy,
)
from merge3.alignment.c2m3 import universe_objective
from merge3.zoo.digits import DigitsConfig, build_model, digits_spec, evaluate

CONFIG = DigitsConfig(hidden=32, depth=3, epochs=15)


def _fw(state_dicts, **options):
    spec = digits_spec(CONFIG)
    return spec, frank_wolfe_synchronized_matching(
        [to_numpy(sd, spec) for sd in state_dicts], spec, **options)


def test_cycle_consistency_is_exact(digits_state_dicts) -> None:
    spec, result = _fw(digits_state_dicts, max_iter=40)
    for perm_id in spec.perm_ids:
        for a, b, c in itertools.permutations(range(3)):
            p_ab = permutation_matrix(result.pairwise(a, b)[perm_id])
            p_bc = permutation_matrix(result.pairwise(b, c)[perm_id])
            p_ca = permutation_matrix(result.pairwise(c, a)[perm_id])
            # integer matrices: the identity exactly, not approximately
            np.testing.assert_array_equal(p_ab @ p_bc @ p_ca, np.eye(len(p_ab), dtype=np.int64))


def test_pairwise_maps_compose_the_universe_maps(digits_state_dicts) -> None:
    spec, result = _fw(digits_state_dicts, max_iter=20)
    state_a, state_b = digits_state_dicts[0], digits_state_dicts[1]
    b_to_a = apply_permutations(state_b, spec, result.pairwise(0, 1))
    # mapping b into a's frame then both into the universe is the same as b directly
    via_a = apply_permutations(b_to_a, spec, result.perms[0])
    direct = apply_permutations(state_b, spec, result.perms[1])
    for name in state_a:
        assert torch.equal(via_a[name], direct[name]), name


def test_planted_permutations_recovered_exactly(digits_state_dicts) -> None:
    spec = digits_spec(CONFIG)
    state = digits_state_dicts[2]
    planted = [random_permutations(spec.sizes(state), seed=s) for s in (21, 22)]
    copies = [state] + [apply_permutations(state, spec, p) for p in planted]
    _, result = _fw(copies)
    for k, perms in enumerate(planted, start=1):
        relative = result.pairwise(k, 0)  # aligns the original (model 0) to copy k
        for perm_id, perm in perms.items():
            np.testing.assert_array_equal(relative[perm_id], perm)
    merge = c2m3_merge(copies, spec)
    in_universe = apply_permutations(state, spec, merge.perms[0])
    for name, value in merge.merged.items():  # merging permuted copies gives the model back
        torch.testing.assert_close(value, in_universe[name], rtol=0, atol=1e-6)


def test_objective_never_decreases(digits_state_dicts) -> None:
    seen = []
    spec, result = _fw(digits_state_dicts, max_iter=60,
                       callback=lambda i, obj, step: seen.append((i, obj, step)))
    objective = np.array(result.objective)
    assert np.all(np.diff(objective) >= 0.0)
    assert objective[-1] > 5 * objective[0]  # the optimisation did something
    assert [i for i, _, _ in seen] == list(range(1, result.iterations + 1))
    assert [obj for _, obj, _ in seen] == result.objective[1:]
    assert all(0.0 <= step <= 1.0 for _, _, step in seen)
    identity = [{p: np.eye(n) for p, n in spec.sizes(digits_state_dicts[0]).items()}] * 3
    params = [to_numpy(sd, spec) for sd in digits_state_dicts]
    assert result.rounded_objective > universe_objective(params, spec, identity)


def test_stops_when_gain_stalls(digits_state_dicts) -> None:
    _, result = _fw(digits_state_dicts, tol=1e3, patience=5)  # no gain ever counts
    assert result.iterations == 5


def test_c2m3_merge_beats_naive_average(digits_state_dicts, digits_data) -> None:
    spec = digits_spec(CONFIG)
    accuracy = {}
    for name, result in (("naive", naive_merge(digits_state_dicts, spec)),
                         ("c2m3", c2m3_merge(digits_state_dicts, spec))):
        model = build_model(CONFIG)
        model.load_state_dict(result.merged)
        accuracy[name] = evaluate(model, digits_data.x_test, digits_data.y_test)[0]
    assert accuracy["c2m3"] > 0.8
    assert accuracy["c2m3"] > accuracy["naive"] + 0.3


@pytest.mark.parametrize("whole_model", [False, True])
def test_c2m3_aligns_transformers(whole_model: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from merge3.alignment import infer_spec, transformer_stream_spec

    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=16)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(LlamaForCausalLM(config).eval())
    states = [m.state_dict() for m in models]
    # MLP blocks only, or also the residual stream (tensors with two permutations)
    spec = transformer_stream_spec(states[0]) if whole_model else infer_spec(states[0])
    result = c2m3_merge(states, spec, max_iter=30)
    assert np.all(np.diff(result.objective) >= 0)
    tokens = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(0))
    for model, aligned in zip(models, result.aligned):
        with torch.no_grad():
            before = model(input_ids=tokens).logits
            model.load_state_dict(aligned)
            after = model(input_ids=tokens).logits
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert any(not np.array_equal(p, np.arange(len(p)))
               for perms in result.perms for p in perms.values())

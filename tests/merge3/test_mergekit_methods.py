"""mergekit 0.1.5's methods in merge3: equal to mergekit's own outputs, and their rules.

CI has no mergekit, so ``tests/merge3/data/mergekit_0.1.5_kernels.safetensors`` holds
inputs and the outputs mergekit 0.1.5 computed from them (written by
``benchmarks/mergekit_parity/golden.py`` in ``.venv-mergekit``). DELLA's and Arcee
Fusion's random draws were made after ``torch.manual_seed(seed)``; merge3 gets a
generator seeded alike, so those cases compare value for value too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from merge3.checkpoints import Checkpoint
from merge3.errors import MergeError, RecipeError
from merge3.executor import check_parameters
from merge3.merging import run_merge
from merge3.methods import METHODS, get_method
from merge3.methods.della import della_keep_probabilities, della_prune
from merge3.methods.slerp import slerp_tensors
from merge3.recipe import parse_recipe

GOLDEN = Path(__file__).parent / "data" / "mergekit_0.1.5_kernels.safetensors"
# mergekit 0.1.5's registry (mergekit/merge_methods/registry.py), all 20 names
MERGEKIT_METHODS = {
    "linear", "slerp", "nuslerp", "passthrough", "model_stock", "arcee_fusion", "karcher",
    "multislerp", "nearswap", "ram", "ramplus_tl", "sce", "task_arithmetic", "ties",
    "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear",
}
ADDED_FOR_ISSUE_17 = {
    "della", "della_linear", "sce", "model_stock", "karcher", "multislerp", "nuslerp",
    "nearswap", "arcee_fusion", "ram", "ramplus_tl", "passthrough",
}
RELATIVE_TOLERANCE = 1e-6  # max |Δ| over max |mergekit's output|, fp32


def _golden() -> tuple[dict[str, str], list[dict]]:
    with safe_open(str(GOLDEN), "pt") as f:
        metadata = f.metadata()
    return metadata, json.loads(metadata["cases"])


METADATA, CASES = _golden()


def _merge3(case: dict, f) -> torch.Tensor:
    """merge3's registered method on the case's tensors, with mergekit's parameters."""
    method = get_method(case["method"])
    family = case["family"]
    base = f.get_tensor(f"{family}.base") if case["has_base"] else None
    experts = [f.get_tensor(f"{family}.expert_{i}") for i in range(1, case["experts"] + 1)]
    given = case["parameters"]
    per_model = {k: given.get(k, [d] * len(experts)) for k, d in method.per_model.items()}
    global_params = {k: given.get(k, d) for k, d in method.global_params.items()}
    assert set(given) <= set(per_model) | set(global_params), "a parameter merge3 lacks"
    return method(experts, base, name=f"model.layers.0.{family}",
                  generator=torch.Generator().manual_seed(case["seed"]),
                  **per_model, **global_params)


def test_every_method_of_mergekit_0_1_5_is_registered() -> None:
    assert not MERGEKIT_METHODS - set(METHODS.names())  # none missing
    for name in ADDED_FOR_ISSUE_17:
        assert get_method(name).description, name  # `merge3 methods` has a line for it


def test_the_golden_outputs_are_mergekit_0_1_5s_and_cover_every_added_method() -> None:
    assert METADATA["mergekit"] == "0.1.5"
    assert {case["method"] for case in CASES} == ADDED_FOR_ISSUE_17


@pytest.mark.parametrize("case", CASES, ids=[c["key"] for c in CASES])
def test_kernel_equals_mergekits_output(case: dict) -> None:
    with safe_open(str(GOLDEN), "pt") as f:
        ours = _merge3(case, f)
        theirs = f.get_tensor(f"out.{case['key']}")
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == torch.float32
    difference = float((ours - theirs).abs().max())
    assert difference <= RELATIVE_TOLERANCE * float(theirs.abs().max()), difference


# -- DELLA's random pruning, in distribution ------------------------------------------------
def test_della_keeps_each_rank_with_its_probability() -> None:
    """Over many seeds each entry survives with p_r = density − ε + 2ε(r−1)/(n−1) (its
    |τ| rank r of n), the rule mergekit's della_magprune draws from."""
    n, density, epsilon, draws = 40, 0.5, 0.3, 3000
    delta = torch.linspace(0.1, 4.0, n)[torch.randperm(n, generator=torch.Generator()
                                                       .manual_seed(1))].reshape(1, n)
    expected = della_keep_probabilities(delta, density, epsilon).reshape(n)
    ranks = delta.abs().reshape(n).argsort().argsort()
    torch.testing.assert_close(expected, density - epsilon + 2 * epsilon * ranks / (n - 1))
    kept = torch.zeros(n)
    for seed in range(draws):
        generator = torch.Generator().manual_seed(seed)
        kept += (della_prune(delta, density, epsilon, generator, rescale=False) != 0
                 ).reshape(n).float()
    frequency = kept / draws
    sigma = (expected * (1 - expected) / draws).sqrt()
    assert bool(((frequency - expected).abs() <= 5 * sigma).all()), frequency - expected
    assert abs(float(frequency.mean()) - density) < 0.02


def test_della_rescale_keeps_the_l1_norm_and_the_seed_decides_the_draw() -> None:
    delta = torch.randn(8, 30, generator=torch.Generator().manual_seed(0))
    pruned = della_prune(delta, 0.4, 0.2, torch.Generator().manual_seed(3))
    torch.testing.assert_close(pruned.abs().sum(), delta.abs().sum())
    assert 0 < int((pruned == 0).sum()) < delta.numel()
    again = della_prune(delta, 0.4, 0.2, torch.Generator().manual_seed(3))
    other = della_prune(delta, 0.4, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(pruned, again) and not torch.equal(pruned, other)


def test_della_refuses_density_and_epsilon_outside_zero_one() -> None:
    with pytest.raises(RecipeError, match="density ± epsilon"):
        get_method("della")([torch.ones(4)], torch.zeros(4), weight=[1.0], density=[0.9],
                            epsilon=[0.2], name="x")


# -- each method's defining rule, by hand ---------------------------------------------------
def test_model_stock_ratio_from_the_task_vectors_angle() -> None:
    base = torch.zeros(4)
    method = get_method("model_stock")
    # orthogonal task vectors: cos 0, t = 0, the base
    assert torch.equal(method([torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 1.0, 0, 0])],
                              base), base)
    # parallel task vectors: cos 1, t = N cos / (1 + (N−1) cos) = 1, their mean
    pair = [torch.tensor([1.0, 2, 0, 0]), torch.tensor([2.0, 4, 0, 0])]
    torch.testing.assert_close(method(pair, base), torch.tensor([1.5, 3.0, 0, 0]))
    # 60°: cos 1/2, t = 2/3 of the way to the mean
    pair = [torch.tensor([1.0, 0, 0, 0]), torch.tensor([0.5, 3**0.5 / 2, 0, 0])]
    torch.testing.assert_close(method(pair, base), (2 / 3) * (pair[0] + pair[1]) / 2)


def test_nearswap_swaps_entries_within_t_and_moves_the_rest_by_t() -> None:
    base = torch.tensor([0.0, 0.0, 0.0])
    other = torch.tensor([0.05, -0.2, 1.0])
    merged = get_method("nearswap")([other], base, t=0.1)
    torch.testing.assert_close(merged, torch.tensor([0.05, -0.1, 0.1]))


def test_ram_keeps_unique_entries_and_averages_shared_ones() -> None:
    base = torch.zeros(4)
    a, b = torch.tensor([1.0, 2.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, -3.0, 0.0])
    torch.testing.assert_close(get_method("ram")([a, b], base, epsilon=1e-5),
                               torch.tensor([1.0, 3.0, -3.0, 0.0]))
    # RAM+: model a shares 1 entry and owns 1 (ρ 1), model b shares 1 and owns 1 (ρ 1):
    # unique entries scaled by 1 + r·clamp(ρ, 0, α) = 1 + 0.5·0.4
    torch.testing.assert_close(
        get_method("ramplus_tl")([a, b], base, r=0.5, alpha=0.4, epsilon=1e-5),
        torch.tensor([1.2, 3.0, -3.6, 0.0]))


def test_sce_weights_by_mean_square_and_erases_disagreeing_signs() -> None:
    base = torch.zeros(3)
    a, b = torch.tensor([1.0, 1.0, -1.0]), torch.tensor([3.0, -3.0, 3.0])
    # weights ∝ mean τ²: 1 and 9 → 0.1, 0.9; elected signs from the sum: +, −, +
    merged = get_method("sce")([a, b], base, select_topk=1.0)
    torch.testing.assert_close(merged, torch.tensor([(0.1 * 1 + 0.9 * 3) / 1.0, -3.0, 3.0]))


def test_karcher_and_multislerp_of_two_directions_are_their_midpoint() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])
    expected = 2.0 * torch.tensor([1.0, 1.0]) / 2**0.5  # mean norm 2 along the bisector
    torch.testing.assert_close(get_method("karcher")([a, b], None), expected)
    torch.testing.assert_close(get_method("multislerp")([a, b], None, weight=[1.0, 1.0]),
                               expected, atol=1e-6, rtol=1e-6)


def test_nuslerp_is_slerp_at_the_weights_ratio() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    merged = get_method("nuslerp")([a, b], None, weight=[1.0, 3.0])
    torch.testing.assert_close(merged, slerp_tensors(0.75, a, b))


def test_arcee_fusion_keeps_only_the_outlier_changes() -> None:
    base = torch.zeros(1, 40)
    model = base.clone()
    model[0, :36] = torch.linspace(0.001, 0.02, 36)  # the bulk: small changes
    model[0, 36:] = torch.tensor([0.5, 0.7, 0.9, 1.1])  # outliers above median + 1.5 IQR
    merged = get_method("arcee_fusion")([model], base)
    assert torch.equal(merged[0, 36:], model[0, 36:])
    assert not bool(merged[0, :36].any())


def test_multislerp_refuses_weights_that_sum_to_zero() -> None:
    with pytest.raises(MergeError, match="sum to 0"):
        get_method("multislerp")([torch.ones(3), torch.zeros(3) + 2], None,
                                 weight=[1.0, -1.0], name="w")


@pytest.mark.parametrize(("method", "parameters", "key"), [
    ("nearswap", {"t": -0.1}, "t"),
    ("sce", {"select_topk": 1.5}, "select_topk"),
    ("ramplus_tl", {"alpha": -1}, "alpha"),
    ("della", {"epsilon": 2.0}, "epsilon"),
])
def test_parameter_ranges_are_checked_at_parse_time(method, parameters, key) -> None:
    recipe = parse_recipe({"merge_method": method, "base_model": "b",
                           "models": [{"model": "a"}], "parameters": parameters})
    with pytest.raises(RecipeError, match=f"parameters.{key}"):
        check_parameters(recipe, get_method(method))


def test_passthrough_scale_follows_filters_on_a_real_checkpoint(llama_family, tmp_path) -> None:
    recipe = parse_recipe({
        "merge_method": "passthrough",
        "models": [{"model": str(llama_family["expert_1"]),
                    "parameters": {"scale": [{"filter": "mlp", "value": 0.5},
                                             {"value": 1.0}]}}]})
    merged = Checkpoint(run_merge(recipe, tmp_path / "out", progress=False))
    source = Checkpoint(llama_family["expert_1"])
    for name in source.names():
        factor = 0.5 if "mlp" in name else 1.0
        assert torch.equal(merged.get(name), source.get(name) * factor), name


def test_karcher_counts_the_base_as_one_more_input(llama_family, tmp_path) -> None:
    """mergekit adds base_model to a karcher merge's inputs (it has no base of its own)."""
    name = "model.layers.1.mlp.up_proj.weight"
    with_base = parse_recipe({"merge_method": "karcher", "base_model": str(llama_family["base"]),
                              "models": [{"model": str(llama_family["expert_1"])},
                                         {"model": str(llama_family["expert_2"])}]})
    merged = Checkpoint(run_merge(with_base, tmp_path / "out", progress=False)).get(name)
    inputs = [Checkpoint(llama_family[k]).get(name) for k in ("expert_1", "expert_2", "base")]
    torch.testing.assert_close(merged, get_method("karcher")(inputs, None), atol=0, rtol=0)

"""Conventions merge3 shares with mergekit 0.1.5, pinned with numbers computed by hand.

Each was checked against mergekit itself (benchmarks/mergekit_parity/README.md); these
tests need no mergekit. Where merge3 deliberately differs (DARE's rescaling), the test
pins merge3's own convention and says so.
"""

from __future__ import annotations

import math

import pytest
import torch

from merge3.checkpoints import Checkpoint, parse_size
from merge3.executor import layer_position, merge_tensor
from merge3.methods import get_method
from merge3.methods.sparsify import dare_drop, magnitude_mask, outlier_mask
from merge3.recipe import parse_recipe, resolve_parameter


# -- gradients: position t and interpolation ---------------------------------------------
@pytest.mark.parametrize(
    ("name", "layers", "t"),
    [
        ("model.layers.0.mlp.up_proj.weight", 4, 0.0),
        ("model.layers.1.mlp.up_proj.weight", 4, 1 / 3),
        ("model.layers.3.self_attn.q_proj.weight", 4, 1.0),
        ("transformer.h.2.attn.c_attn.bias", 5, 0.5),
        # Outside the layers (embeddings, final norm, head): t = 0, as mergekit plans
        # pre- and post-weights with a ConfigReader at t=0.
        ("model.embed_tokens.weight", 4, 0.0),
        ("model.norm.weight", 4, 0.0),
        ("lm_head.weight", 4, 0.0),
        ("transformer.wte.weight", 4, 0.0),
        # One layer: mergekit uses t = 1.
        ("model.layers.0.mlp.up_proj.weight", 1, 1.0),
    ],
)
def test_layer_position_is_mergekits_t(name: str, layers: int, t: float) -> None:
    assert layer_position(name, layers) == pytest.approx(t, abs=1e-12)


@pytest.mark.parametrize(
    ("values", "t", "expected"),
    [
        ([0.2, 1.0], 0.0, 0.2),
        ([0.2, 1.0], 1 / 3, 0.2 + 0.8 / 3),  # 0.4667
        ([0.2, 1.0], 1.0, 1.0),
        # Three points: t = 1/3 lies 2/3 of the way from values[0] to values[1].
        ([1.0, 0.1, 0.6], 1 / 3, 1.0 / 3 + 0.1 * 2 / 3),  # 0.4
        ([1.0, 0.1, 0.6], 2 / 3, 0.1 * 2 / 3 + 0.6 / 3),  # 0.2667
        # The canonical slerp recipe's 5 points over 4 layers: layer 1 (t = 1/3).
        ([0, 0.5, 0.3, 0.7, 1], 1 / 3, 0.5 * 2 / 3 + 0.3 / 3),  # 0.4333
    ],
)
def test_gradient_interpolation(values: list[float], t: float, expected: float) -> None:
    assert resolve_parameter(values, "model.layers.1.mlp.up_proj.weight", t) == (
        pytest.approx(expected, abs=1e-12)
    )


def test_filters_first_match_wins_and_star_matches_all() -> None:
    recipe = parse_recipe({
        "merge_method": "slerp", "base_model": "a", "models": [{"model": "b"}],
        "parameters": {"t": [
            {"filter": "self_attn", "value": [0.0, 1.0]},
            {"filter": "mlp", "value": 0.25},
            {"value": 0.5},
        ]},
    })
    setting = recipe.parameters["t"]
    assert resolve_parameter(setting, "model.layers.2.self_attn.q_proj.weight", 0.5) == 0.5
    assert resolve_parameter(setting, "model.layers.3.self_attn.q_proj.weight", 1.0) == 1.0
    assert resolve_parameter(setting, "model.layers.0.mlp.up_proj.weight", 0.0) == 0.25
    assert resolve_parameter(setting, "model.norm.weight", 0.0) == 0.5


def test_unmatched_model_filter_falls_back_to_global_value(
    llama_family: dict, tmp_path
) -> None:
    """mergekit resolves each tensor's parameter from the model's settings, then the
    global ones, then the default (ConfigReader.parameter_sources): a model's filter list
    that matches no tensor falls through to the global value."""
    from merge3.merging import run_merge

    def merge(expert_density, out: str) -> dict[str, torch.Tensor]:
        recipe = parse_recipe({
            "merge_method": "ties", "base_model": str(llama_family["base"]),
            "models": [
                {"model": str(llama_family["expert_1"]),
                 "parameters": {"weight": 1.0, **expert_density}},
                {"model": str(llama_family["expert_2"]), "parameters": {"weight": 1.0}},
            ],
            "parameters": {"density": 0.6, "lambda": [{"filter": "mlp", "value": 0.5}]},
        })
        return Checkpoint(run_merge(recipe, tmp_path / out, progress=False)).state_dict()

    mixed = merge({"density": [{"filter": "mlp", "value": 0.3}]}, "mixed")
    mlp_density = merge({"density": 0.3}, "all_0.3")
    global_density = merge({}, "global")
    for name, tensor in mixed.items():
        # MLP tensors: the model's filter (0.3); the rest: the global density (0.6).
        expected = mlp_density[name] if "mlp" in name else global_density[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=0, msg=name)
    assert not torch.equal(mlp_density["model.layers.0.mlp.up_proj.weight"],
                           global_density["model.layers.0.mlp.up_proj.weight"])


# -- TIES: sign election by weighted mass, disjoint mean over agreeing weights --------------
def test_ties_hand_example_weighted() -> None:
    base = torch.zeros(4)
    experts = [torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.tensor([-3.0, 1.0, 1.0, 0.5])]
    merged = merge_tensor(get_method("ties"), "model.layers.0.mlp.up_proj.weight", base,
                          experts, [{"weight": 2.0, "density": 1.0},
                                    {"weight": 1.0, "density": 1.0}],
                          {"normalize": True, "lambda": 1.0, "int8_mask": False})
    # Weighted deltas: [2, -4, 6, 1] and [-3, 1, 1, 0.5]; sums -1, -3, 7, 1.5 elect
    # signs -, -, +, +. The divisor is the sum of the agreeing models' weights.
    expected = torch.tensor([-3.0 / 1, -4.0 / 2, (6.0 + 1.0) / 3, (1.0 + 0.5) / 3])
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-6)


def test_ties_zero_mass_elects_positive_sign() -> None:
    # mergekit: majority_sign = (sum >= 0) * 2 - 1, so a tie goes to +.
    merged = merge_tensor(get_method("ties"), "x", torch.zeros(1),
                          [torch.tensor([1.0]), torch.tensor([-1.0])],
                          [{"weight": 1.0, "density": 1.0}] * 2,
                          {"normalize": True, "lambda": 1.0, "int8_mask": False})
    assert merged.item() == 1.0


def test_ties_lambda_applies_after_normalize() -> None:
    merged = merge_tensor(get_method("ties"), "x", torch.zeros(2),
                          [torch.tensor([2.0, 4.0]), torch.tensor([4.0, 2.0])],
                          [{"weight": 1.0, "density": 1.0}] * 2,
                          {"normalize": True, "lambda": 0.5, "int8_mask": False})
    torch.testing.assert_close(merged, torch.tensor([1.5, 1.5]))


# -- sparsification counts --------------------------------------------------------------
def test_magnitude_keeps_at_least_one() -> None:
    delta = torch.arange(1.0, 11.0)
    assert magnitude_mask(delta, 0.05).sum() == 1  # int(0.5) = 0 -> max(1, 0)
    assert magnitude_mask(delta, 0.05)[-1]
    assert magnitude_mask(delta, 0.35).tolist() == [False] * 7 + [True] * 3


def test_breadcrumbs_drops_outliers_then_keeps_next_density() -> None:
    delta = torch.tensor([5.0, -1.0, 9.0, 2.0, -7.0, 3.0, 0.5, -8.0, 4.0, 6.0])
    keep = outlier_mask(delta, density=0.5, gamma=0.1)
    # Sorted |δ|: 0.5 1 2 3 4 5 6 7 8 9 -> drop the top 1 (9) and the bottom 10-5-1 = 4.
    assert sorted(delta[keep].abs().tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    # No room for both (9 kept + 2 outliers > 10): mergekit drops fewer outliers (1, not 2)
    # to keep the density.
    keep = outlier_mask(delta, density=0.95, gamma=0.2)
    assert sorted(delta[keep].abs().tolist()) == [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    # Unlike TIES, a density under one element keeps nothing (int(0.5) = 0), as in mergekit.
    assert outlier_mask(delta, density=0.05, gamma=0.0).sum() == 0


def test_dare_rescales_by_inverse_density_not_l1() -> None:
    """merge3's DARE follows the paper (survivors × 1/(1−p)); mergekit matches the L1
    norm of the task vector instead (sparsify.rescaled_masked_tensor). Pinned here."""
    delta = torch.full((1000,), 2.0)
    dropped = dare_drop(delta, 0.25, torch.Generator().manual_seed(0))
    kept = dropped != 0
    assert torch.all(dropped[kept] == 8.0)  # 2 / 0.25, whatever fraction survived
    l1_ratio = float(dropped.abs().sum() / delta.abs().sum())
    assert l1_ratio != 1.0  # mergekit's rescaling would make this exactly 1
    assert abs(l1_ratio - 1.0) < 0.2


# -- linear and slerp -------------------------------------------------------------------
def test_linear_normalize_divides_by_weight_sum() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])
    linear = get_method("linear")
    merged = merge_tensor(linear, "x", None, [a, b], [{"weight": 1.0}, {"weight": 2.0}],
                          {"normalize": True})
    torch.testing.assert_close(merged, torch.tensor([1 / 3, 2.0]))
    merged = merge_tensor(linear, "x", None, [a, b], [{"weight": 1.0}, {"weight": 2.0}],
                          {"normalize": False})
    torch.testing.assert_close(merged, torch.tensor([1.0, 6.0]))


def test_slerp_whole_tensor_great_circle_and_colinear_lerp() -> None:
    slerp = get_method("slerp")
    merged = merge_tensor(slerp, "x", torch.tensor([1.0, 0.0]), [torch.tensor([0.0, 2.0])],
                          [{}], {"t": 0.5})
    # θ = 90°: sin(45°)/sin(90°) on both, applied to the unnormalised tensors.
    half = math.sin(math.pi / 4)
    torch.testing.assert_close(merged, torch.tensor([half, 2 * half]))
    # Colinear (|cos| > 0.9995): plain linear interpolation.
    merged = merge_tensor(slerp, "x", torch.tensor([1.0, 1.0]), [torch.tensor([3.0, 3.0])],
                          [{}], {"t": 0.25})
    torch.testing.assert_close(merged, torch.tensor([1.5, 1.5]))


# -- shard sizes ------------------------------------------------------------------------
def test_shard_size_reads_mergekits_spelling() -> None:
    # mergekit's parse_kmb: "5B" is 5·10⁹ bytes, "200M" 200·10⁶ (it rejects "200MB").
    assert parse_size("5B") == 5 * 10**9
    assert parse_size("200M") == 200 * 10**6
    assert parse_size("200MB") == 200 * 10**6

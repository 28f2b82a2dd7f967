"""mergekit's ``slices:``: layer ranges of models stacked into one (frankenmerges), merged
slice by slice, on real tiny Llama checkpoints (3 layers, float32)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from merge3.checkpoints import Checkpoint
from merge3.cli import main
from merge3.errors import MergeError, RecipeError
from merge3.merging import plan_merge, run_merge
from merge3.methods import get_method
from merge3.methods.slerp import slerp_tensors
from merge3.recipe import parse_recipe
from merge3.slices import is_pre_layer, with_layer_index


def _source(family, name, start, end, **parameters):
    source = {"model": str(family[name]), "layer_range": [start, end]}
    if parameters:
        source["parameters"] = parameters
    return source


def _layer(name: str, index: int) -> str:
    return f"model.layers.{index}.{name}"


LAYER_TENSORS = ("self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight")


def test_a_frankenmerge_stacks_the_layer_ranges(llama_family, tmp_path):
    recipe = parse_recipe({"merge_method": "passthrough", "slices": [
        {"sources": [_source(llama_family, "expert_1", 0, 2)]},
        {"sources": [_source(llama_family, "expert_2", 1, 3,
                             scale=[{"filter": "mlp", "value": 0.5}, {"value": 1.0}])]},
        {"sources": [_source(llama_family, "expert_3", 2, 3)]},
    ]})
    out = run_merge(recipe, tmp_path / "out", progress=False)
    merged = Checkpoint(out)
    e1, e2, e3 = (Checkpoint(llama_family[k]) for k in ("expert_1", "expert_2", "expert_3"))
    # output layers 0-1: expert_1's 0-1; 2-3: expert_2's 1-2 (mlp halved); 4: expert_3's 2
    for out_index, (source, index, mlp_scale) in enumerate(
            [(e1, 0, 1.0), (e1, 1, 1.0), (e2, 1, 0.5), (e2, 2, 0.5), (e3, 2, 1.0)]):
        for name in LAYER_TENSORS:
            factor = mlp_scale if "mlp" in name else 1.0
            assert torch.equal(merged.get(_layer(name, out_index)),
                               source.get(_layer(name, index)) * factor), (out_index, name)
    # embeddings from the first slice's model, final norm and head from the last slice's
    assert torch.equal(merged.get("model.embed_tokens.weight"),
                       e1.get("model.embed_tokens.weight"))
    for name in ("model.norm.weight", "lm_head.weight"):
        assert torch.equal(merged.get(name), e3.get(name)), name
    assert len(merged.names()) == 3 + 5 * 9
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 5
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 5 and len(model.model.layers) == 5
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_per_model_filters_match_the_source_tensor_and_global_ones_the_output(
        llama_family, tmp_path):
    """mergekit resolves a source's parameters on the source tensor's name (layer 1 here
    is output layer 0) and the global ones on the output tensor's name."""
    recipe = parse_recipe({"merge_method": "passthrough", "slices": [
        {"sources": [_source(llama_family, "expert_1", 1, 3,
                             scale=[{"filter": "layers.1.", "value": 2.0}, {"value": 1.0}])]},
    ]})
    merged = Checkpoint(run_merge(recipe, tmp_path / "out", progress=False))
    source = Checkpoint(llama_family["expert_1"])
    name = "mlp.up_proj.weight"
    assert torch.equal(merged.get(_layer(name, 0)), 2.0 * source.get(_layer(name, 1)))
    assert torch.equal(merged.get(_layer(name, 1)), source.get(_layer(name, 2)))


def test_a_gradient_runs_across_each_slice_and_slice_parameters_win(llama_family, tmp_path):
    recipe = parse_recipe({
        "merge_method": "slerp", "base_model": str(llama_family["base"]),
        "slices": [
            {"sources": [_source(llama_family, "base", 0, 2),
                         _source(llama_family, "expert_1", 0, 2)],
             "parameters": {"t": [0.2, 0.8]}},
            {"sources": [_source(llama_family, "base", 2, 3),
                         _source(llama_family, "expert_1", 2, 3)]},
        ],
        "parameters": {"t": 0.5},
    })
    merged = Checkpoint(run_merge(recipe, tmp_path / "out", progress=False))
    base, expert = Checkpoint(llama_family["base"]), Checkpoint(llama_family["expert_1"])
    # slice 0 has 2 layers: t = 0 and 1 of its own gradient [0.2, 0.8]; slice 1 (one
    # layer) takes the recipe's 0.5; the embeddings use slice 0's settings at t = 0
    expected_t = {_layer("mlp.up_proj.weight", 0): 0.2, _layer("mlp.up_proj.weight", 1): 0.8,
                  _layer("mlp.up_proj.weight", 2): 0.5, "model.embed_tokens.weight": 0.2,
                  "lm_head.weight": 0.5}
    for name, t in expected_t.items():
        torch.testing.assert_close(merged.get(name),
                                   slerp_tensors(t, base.get(name), expert.get(name)),
                                   atol=0, rtol=0, msg=name)


def test_ties_slices_repeat_layers_onto_the_bases_own(llama_family, tmp_path):
    recipe = parse_recipe({
        "merge_method": "ties", "base_model": str(llama_family["base"]),
        "slices": [
            {"sources": [_source(llama_family, "base", 0, 3),
                         _source(llama_family, "expert_1", 0, 3, weight=1.0, density=0.5),
                         _source(llama_family, "expert_2", 0, 3, weight=0.7, density=0.6)]},
            {"sources": [_source(llama_family, "base", 1, 3),
                         _source(llama_family, "expert_3", 1, 3, weight=1.0, density=0.4)]},
        ]})
    merged = Checkpoint(run_merge(recipe, tmp_path / "out", progress=False))
    base, expert = Checkpoint(llama_family["base"]), Checkpoint(llama_family["expert_3"])
    ties = get_method("ties")
    for out_index, index in ((3, 1), (4, 2)):
        name = _layer("self_attn.o_proj.weight", index)
        expected = ties([expert.get(name)], base.get(name), weight=[1.0], density=[0.4])
        assert torch.equal(merged.get(_layer("self_attn.o_proj.weight", out_index)), expected)
    assert plan_merge(recipe).slices.num_layers == 5


def test_a_slice_with_its_own_base_and_the_head_from_all_of_the_last_slices_sources(
        llama_family, tmp_path):
    """Slice 1 merges onto expert_1 with its own lambda; the head and final norm come from
    every source of the last slice (mergekit 0.1.5 keeps only as many of them as the first
    slice has: benchmarks/mergekit_parity, convention 8)."""
    recipe = parse_recipe({
        "merge_method": "task_arithmetic", "base_model": str(llama_family["base"]),
        "slices": [
            {"sources": [_source(llama_family, "base", 0, 2),
                         _source(llama_family, "expert_1", 0, 2, weight=0.8)]},
            {"base_model": str(llama_family["expert_1"]), "parameters": {"lambda": 0.9},
             "sources": [_source(llama_family, "expert_1", 2, 3),
                         _source(llama_family, "expert_2", 2, 3, weight=0.5),
                         _source(llama_family, "expert_3", 2, 3, weight=0.5)]}]})
    merged = Checkpoint(run_merge(recipe, tmp_path / "out", progress=False))
    models = {k: Checkpoint(llama_family[k]) for k in ("base", "expert_1", "expert_2",
                                                       "expert_3")}
    method = get_method("task_arithmetic")

    def expected(name, base, experts, weights, lam):
        return method([models[k].get(name) for k in experts], models[base].get(name),
                      weight=weights, lambda_=lam)

    embed, head = "model.embed_tokens.weight", "lm_head.weight"
    torch.testing.assert_close(merged.get(embed), expected(embed, "base", ["expert_1"],
                                                           [0.8], 1.0), atol=0, rtol=0)
    torch.testing.assert_close(merged.get(head), expected(
        head, "expert_1", ["expert_2", "expert_3"], [0.5, 0.5], 0.9), atol=0, rtol=0)
    layer = _layer("mlp.up_proj.weight", 2)
    torch.testing.assert_close(merged.get(layer), expected(
        layer, "expert_1", ["expert_2", "expert_3"], [0.5, 0.5], 0.9), atol=0, rtol=0)


def test_one_slice_of_whole_models_merges_as_the_models_recipe(llama_family, tmp_path):
    models = {"merge_method": "ties", "base_model": str(llama_family["base"]),
              "models": [{"model": str(llama_family[k]), "parameters": {"density": 0.5}}
                         for k in ("expert_1", "expert_2")]}
    sliced = {"merge_method": "ties", "base_model": str(llama_family["base"]),
              "slices": [{"sources": [_source(llama_family, k, 0, 3, density=0.5)
                                      for k in ("base", "expert_1", "expert_2")]}]}
    assert plan_merge(parse_recipe(sliced)).slices is None  # planned as whole models
    a = Checkpoint(run_merge(parse_recipe(models), tmp_path / "a", progress=False))
    b = Checkpoint(run_merge(parse_recipe(sliced), tmp_path / "b", progress=False))
    for name in a.names():
        assert torch.equal(a.get(name), b.get(name)), name


def test_karcher_slices_without_the_base_merge_without_it(llama_family, tmp_path):
    """mergekit's karcher has no base: a slice that leaves base_model out ignores it."""
    recipe = parse_recipe({"merge_method": "karcher", "base_model": str(llama_family["base"]),
                           "slices": [{"sources": [_source(llama_family, k, 0, 3)
                                                   for k in ("expert_1", "expert_2")]}]})
    merged = Checkpoint(run_merge(recipe, tmp_path / "out", progress=False))
    name = _layer("mlp.gate_proj.weight", 2)
    inputs = [Checkpoint(llama_family[k]).get(name) for k in ("expert_1", "expert_2")]
    assert torch.equal(merged.get(name), get_method("karcher")(inputs, None))


def test_the_cli_merges_a_slices_recipe_with_relative_paths(llama_family, tmp_path, capsys):
    for name in ("expert_1", "expert_2"):
        shutil.copytree(llama_family[name], tmp_path / name)
    recipe = tmp_path / "franken.yaml"
    recipe.write_text("merge_method: passthrough\nslices:\n"
                      "  - sources: [{model: expert_1, layer_range: [0, 3]}]\n"
                      "  - sources: [{model: expert_2, layer_range: [2, 3]}]\n")
    assert main(["merge", str(recipe), str(tmp_path / "out"), "-q"]) == 0
    merged = Checkpoint(tmp_path / "out")
    assert torch.equal(merged.get(_layer("mlp.up_proj.weight", 3)),
                       Checkpoint(llama_family["expert_2"]).get(_layer("mlp.up_proj.weight", 2)))


def _sliced(family, method, *slices, base=False, **extra):
    """A recipe of ``slices``, each a list of (model, start, end)."""
    recipe = {"merge_method": method, **extra,
              "slices": [{"sources": [_source(family, *source) for source in part]}
                         for part in slices]}
    if base:
        recipe["base_model"] = str(family["base"])
    return recipe


PAIR = [("expert_1", 0, 2), ("expert_2", 0, 2)]


@pytest.mark.parametrize(("method", "slices", "extra", "message"), [
    ("passthrough", [[("expert_1", 0, 2), ("expert_2", 0, 1)]], {}, "same number of layers"),
    ("passthrough", [[("expert_1", 2, 1)]], {}, r"0 <= start <= end"),
    ("passthrough", [[("expert_1", 1, 5)]], {}, "goes past its 3 layers"),
    ("passthrough", [PAIR], {}, "passthrough merges exactly 1 model"),
    ("ties", [[("expert_1", 0, 2)]], {"base": True}, "not among the slice's sources"),
    ("multislerp", [PAIR], {"base": True}, "multislerp is given a base model"),
    ("slerp", [[("base", 0, 2), ("expert_1", 0, 2)]], {"base": True, "parameters": {"tt": 1}},
     r"parameters: slerp has no parameter 'tt'. Did you mean 't'\?"),
    ("passthrough", [[("expert_1", 0, 2)]], {"models": [{"model": "x"}]},
     "either `models` or `slices`"),
    ("rebasin", [PAIR], {}, "cannot merge layer slices"),
])
def test_bad_slices_are_refused_naming_the_fault(llama_family, method, slices, extra,
                                                 message):
    with pytest.raises(RecipeError, match=message):
        plan_merge(parse_recipe(_sliced(llama_family, method, *slices, **extra)))


def test_slices_of_models_of_different_architectures_are_refused(llama_family, gpt2_family):
    recipe = parse_recipe({"merge_method": "passthrough", "slices": [
        {"sources": [_source(llama_family, "expert_1", 0, 2)]},
        {"sources": [_source(gpt2_family, "expert_1", 0, 1)]}]})
    with pytest.raises(MergeError, match="Architectures differ among the slices' models"):
        plan_merge(recipe)


def test_layer_names_and_which_tensors_precede_the_layers():
    assert with_layer_index("model.layers.3.mlp.up_proj.weight", 7) == (
        "model.layers.7.mlp.up_proj.weight")
    assert with_layer_index("transformer.h.0.attn.c_attn.bias", 12) == (
        "transformer.h.12.attn.c_attn.bias")
    assert is_pre_layer("model.embed_tokens.weight") and is_pre_layer("transformer.wpe.weight")
    assert not is_pre_layer("lm_head.weight") and not is_pre_layer("embed_out.weight")
    assert not is_pre_layer("model.norm.weight") and not is_pre_layer("transformer.ln_f.bias")

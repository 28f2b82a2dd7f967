"""Outputs never overlap inputs; parameter values are checked when a recipe is parsed."""

from __future__ import annotations

import os

import pytest

from merge3.errors import CheckpointError, RecipeError
from merge3.merging import plan_merge, run_merge
from merge3.recipe import parse_recipe


def _ties(family, **params) -> dict:
    return {"merge_method": "ties", "base_model": str(family["base"]),
            "models": [{"model": str(family["expert_1"]), "parameters": {"density": 0.5}},
                       {"model": str(family["expert_2"]), "parameters": {"density": 0.5}}],
            "parameters": params}


def _snapshot(path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in path.rglob("*")}


@pytest.mark.parametrize("where", ["base", "expert", "inside", "parent", "link"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_overlapping_an_input_is_refused(llama_family, tmp_path, where, overwrite):
    recipe = parse_recipe(_ties(llama_family))
    base, expert = llama_family["base"], llama_family["expert_1"]
    out = {"base": base, "expert": expert, "inside": expert / "merged",
           "parent": expert.parent, "link": tmp_path / "link"}[where]
    if where == "link":
        os.symlink(base, out)
    before = _snapshot(base), _snapshot(expert)
    with pytest.raises(CheckpointError, match=r"(is|lies inside|contains) the input model"):
        run_merge(recipe, out, overwrite=overwrite, progress=False)
    assert (_snapshot(base), _snapshot(expert)) == before
    assert not (expert / "merged").exists()


def test_an_output_that_is_a_file_is_refused(llama_family, tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    with pytest.raises(CheckpointError, match="is not a directory"):
        run_merge(parse_recipe(_ties(llama_family)), out, progress=False)
    assert out.read_text() == "x"


@pytest.mark.parametrize(("recipe_change", "message"), [
    ({"models": 0, "density": 1.5}, r"models\[0\]\.parameters\.density: 1\.5 is outside"),
    ({"models": 1, "density": [0.2, -0.1]}, r"density: -0\.1 is outside the valid range of ties"),
    ({"global": "density", "value": "half"}, r"density: 'half' is outside"),
])
def test_parameter_values_outside_their_range_are_refused(llama_family, recipe_change,
                                                          message):
    data = _ties(llama_family)
    if "models" in recipe_change:
        data["models"][recipe_change["models"]]["parameters"]["density"] = (
            recipe_change["density"])
    else:
        data["parameters"][recipe_change["global"]] = recipe_change["value"]
    with pytest.raises(RecipeError, match=message):
        plan_merge(parse_recipe(data))


def test_slerp_t_and_consensus_k_ranges(llama_family):
    slerp = {"merge_method": "slerp", "base_model": str(llama_family["base"]),
             "models": [{"model": str(llama_family["expert_1"])}], "parameters": {"t": 1.2}}
    with pytest.raises(RecipeError, match=r"parameters\.t: 1\.2 is outside"):
        plan_merge(parse_recipe(slerp))
    slerp["parameters"]["t"] = [0.0, 1.0]
    plan_merge(parse_recipe(slerp))  # the ends of the range are valid


def test_normalised_weights_that_sum_to_zero_are_refused(llama_family):
    data = {"merge_method": "linear",
            "models": [{"model": str(llama_family["expert_1"]), "parameters": {"weight": 1.0}},
                       {"model": str(llama_family["expert_2"]),
                        "parameters": {"weight": [-1.0, 0.5]}}],
            "parameters": {"normalize": True}}
    with pytest.raises(RecipeError, match=r"weights sum to 0 \(at layer position t = 0\.00\)"):
        plan_merge(parse_recipe(data))
    data["parameters"]["normalize"] = False
    plan_merge(parse_recipe(data))  # without normalising, a zero sum is a valid recipe


def test_integer_buffers_only_the_base_has_do_not_block_a_merge(llama_family, tmp_path):
    """A base as packages ship it (an int64 `position_ids` buffer) merges with experts
    re-saved without it; the output keeps the base's buffer. A float tensor an expert
    lacks is still refused."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from merge3.checkpoints import Checkpoint
    from merge3.errors import MergeError

    base = tmp_path / "base"
    shutil.copytree(llama_family["base"], base)
    state = load_file(str(base / "model.safetensors"))
    ids = torch.arange(16, dtype=torch.int64).unsqueeze(0)
    save_file({**state, "model.embeddings.position_ids": ids}, str(base / "model.safetensors"),
              metadata={"format": "pt"})
    recipe = _ties(llama_family)
    recipe["base_model"] = str(base)
    out = Checkpoint(run_merge(parse_recipe(recipe), tmp_path / "merged", progress=False))
    assert torch.equal(out.get("model.embeddings.position_ids"), ids)
    assert set(out.names()) == set(state) | {"model.embeddings.position_ids"}

    lacking = tmp_path / "lacking"
    shutil.copytree(llama_family["expert_1"], lacking)
    expert = load_file(str(lacking / "model.safetensors"))
    dropped = next(k for k, v in expert.items() if v.is_floating_point())
    del expert[dropped]
    save_file(expert, str(lacking / "model.safetensors"), metadata={"format": "pt"})
    recipe["models"][0]["model"] = str(lacking)
    with pytest.raises(MergeError, match=f"{dropped}.*missing from"):
        plan_merge(parse_recipe(recipe))

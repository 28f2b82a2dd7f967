"""Bad input: each a clear error naming the culprit and the fix, and no output left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from merge3.cli import main
from merge3.errors import CheckpointError, MergeError, RecipeError, UnknownNameError
from merge3.merging import run_merge
from merge3.recipe import load_recipe, parse_recipe


def _recipe(base: Path, *models: Path, method: str = "task_arithmetic", **extra):
    data = {"merge_method": method, "base_model": str(base),
            "models": [{"model": str(m)} for m in models], **extra}
    return parse_recipe(data)


def _edit(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    state = load_file(str(weights))
    change(state)
    save_file(state, str(weights), metadata={"format": "pt"})
    return dst


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def _fails(recipe, out: Path, error, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        run_merge(recipe, out, progress=False)
    _assert_nothing_written(out)


NAME = "model.layers.1.mlp.up_proj.weight"


def test_shape_mismatch(llama_family, tmp_path):
    bad = _edit(llama_family["expert_1"], tmp_path / "bad",
                lambda s: s.__setitem__(NAME, torch.zeros(3, 3)))
    _fails(_recipe(llama_family["base"], bad), tmp_path / "out", MergeError,
           rf"Shape mismatch for tensor '{NAME}'.*\[3, 3\].*{bad}")


def test_missing_tensor(llama_family, tmp_path):
    bad = _edit(llama_family["expert_1"], tmp_path / "bad", lambda s: s.pop(NAME))
    _fails(_recipe(llama_family["base"], bad), tmp_path / "out", MergeError,
           rf"'{NAME}' is in .* but missing from {bad}")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_in_an_input(llama_family, tmp_path, value):
    def poison(state):
        state["model.layers.2.mlp.down_proj.weight"][0, 0] = value

    bad = _edit(llama_family["expert_2"], tmp_path / "bad", poison)
    _fails(_recipe(llama_family["base"], llama_family["expert_1"], bad), tmp_path / "out",
           CheckpointError, rf"'model.layers.2.mlp.down_proj.weight' in {bad} contains NaN or Inf")


def test_truncated_safetensors(llama_family, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(llama_family["expert_1"], bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    _fails(_recipe(llama_family["base"], bad), tmp_path / "out", CheckpointError,
           r"model.safetensors is truncated.*Fix: re-download")


def test_architectures_differ(llama_family, gpt2_family, tmp_path):
    _fails(_recipe(llama_family["base"], gpt2_family["expert_1"]), tmp_path / "out", MergeError,
           r"Architectures differ: .* is LlamaForCausalLM, .* is GPT2LMHeadModel")


def test_unknown_method_suggests_the_closest(llama_family, tmp_path):
    _fails(_recipe(llama_family["base"], llama_family["expert_1"], method="tie"),
           tmp_path / "out", UnknownNameError, r"Unknown merge method 'tie'. Did you mean 'ties'")


def test_unknown_recipe_key_suggests_the_closest(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown key 'base_modle'.*Did you mean 'base_model'"):
        parse_recipe({"merge_method": "ties", "base_modle": "x"})
    with pytest.raises(RecipeError, match=r"models.0.paramters.*Did you mean 'parameters'"):
        parse_recipe({"merge_method": "ties", "models": [{"model": "x", "paramters": {}}]})


def test_unknown_parameter_suggests_the_closest(llama_family, tmp_path):
    recipe = _recipe(llama_family["base"], llama_family["expert_1"], method="ties",
                     parameters={"densty": 0.5})
    _fails(recipe, tmp_path / "out", RecipeError, r"no parameter 'densty'. Did you mean 'density'")


def test_base_model_missing(llama_family, tmp_path):
    recipe = parse_recipe({"merge_method": "ties",
                           "models": [{"model": str(llama_family["expert_1"])}]})
    _fails(recipe, tmp_path / "out", RecipeError, r"ties needs a base model.*base_model:")


def test_model_path_missing(llama_family, tmp_path):
    _fails(_recipe(llama_family["base"], tmp_path / "nowhere"), tmp_path / "out", RecipeError,
           r"'.*nowhere' does not exist")


def test_recipe_file_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("merge_method: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
    with pytest.raises(RecipeError, match="Cannot read recipe"):
        load_recipe(tmp_path / "absent.yaml")


def test_cli_prints_one_line_and_exits_nonzero(llama_family, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"merge_method: ties\nbase_model: {llama_family['base']}\n"
                      f"models:\n  - model: {llama_family['expert_1']}\nbogus: 1\n")
    code = main(["merge", str(recipe), str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("merge3: error:") and "bogus" in err and "Fix:" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    _assert_nothing_written(tmp_path / "out")

"""C²M³ / Re-Basin / MergeMany as recipe merge methods (align whole models, then average)."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from merge3.alignment.permute import apply_permutations, random_permutations
from merge3.alignment.spec import infer_spec
from merge3.checkpoints import Checkpoint
from merge3.merging import run_merge
from merge3.recipe import parse_recipe


@pytest.fixture(scope="module")
def planted(llama_family, tmp_path_factory):
    """The base model and a copy whose MLP hidden units are secretly permuted."""
    base = Checkpoint(llama_family["base"]).state_dict()
    spec = infer_spec(base)
    permuted = apply_permutations(base, spec, random_permutations(spec.sizes(base), seed=3))
    out = tmp_path_factory.mktemp("planted") / "permuted"
    shutil.copytree(llama_family["base"], out)
    save_file({k: v.contiguous() for k, v in permuted.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    return llama_family["base"], out


@pytest.mark.parametrize("method", ["c2m3", "rebasin", "mergemany"])
def test_alignment_undoes_a_planted_permutation(planted, method, tmp_path):
    base, permuted = planted
    recipe = parse_recipe({"merge_method": method,
                           "models": [{"model": str(base)}, {"model": str(permuted)}],
                           "parameters": {"max_iter": 50}})
    out = run_merge(recipe, tmp_path / "m", progress=False)
    # the average of two aligned copies is the model itself, up to a permutation of its
    # hidden units (MergeMany's common frame need not be the first model's): same outputs
    tokens = torch.tensor([[1, 5, 9, 3, 7, 2]])
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(base)(tokens).logits
        got = AutoModelForCausalLM.from_pretrained(out)(tokens).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_naive_average_of_the_same_pair_is_not_the_model(planted, tmp_path):
    base, permuted = planted
    recipe = parse_recipe({"merge_method": "linear",
                           "models": [{"model": str(base)}, {"model": str(permuted)}]})
    out = run_merge(recipe, tmp_path / "m", progress=False)
    tokens = torch.tensor([[1, 5, 9, 3, 7, 2]])
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(base)(tokens).logits
        got = AutoModelForCausalLM.from_pretrained(out)(tokens).logits
    assert not torch.allclose(got, expected, atol=1e-3)

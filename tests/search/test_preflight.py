"""search.preflight: bad models and mismatched item banks are refused before any
candidate runs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from irt.bank import ItemBank
from irt.params import ItemParams
from merge3.errors import CheckpointError, MergeError, RecipeError
from search.preflight import check_banks, check_models


def _experts(family):
    return {"a": str(family["expert_1"]), "b": str(family["expert_2"])}


def test_good_models_pass(llama_family):
    check_models(str(llama_family["base"]), _experts(llama_family))


def test_the_base_among_the_experts_and_duplicates_are_refused(llama_family):
    experts = _experts(llama_family)
    with pytest.raises(RecipeError, match=r"experts.c is the base model"):
        check_models(str(llama_family["base"]), {**experts, "c": str(llama_family["base"])})
    with pytest.raises(RecipeError, match=r"experts.c and experts.a are the same model"):
        check_models(str(llama_family["base"]), {**experts, "c": experts["a"] + "/."})


def test_an_expert_with_one_nan_is_refused_naming_the_tensor(llama_family, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(llama_family["expert_1"], broken)
    weights = next(broken.glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(n for n, t in tensors.items() if t.is_floating_point() and t.dim() == 2)
    tensors[name].view(-1)[3] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"{name}.*broken.*NaN or Inf"):
        check_models(str(llama_family["base"]), {"a": str(broken)})


def test_an_expert_of_another_architecture_is_refused(llama_family, gpt2_family):
    with pytest.raises(MergeError):
        check_models(str(llama_family["base"]), {"a": str(gpt2_family["expert_1"])})


def _bank(task: str, n: int) -> ItemBank:
    ids = tuple(f"{task}/item-{i}" for i in range(n))
    return ItemBank(ItemParams(np.ones((n, 1)), np.zeros(n)), ids, (task,) * n, ("m0",),
                    np.zeros((1, 1)), np.ones((1, n)))


def test_banks_must_hold_their_tasks_items_and_fit_the_anchors():
    items = {"t": [f"item-{i}" for i in range(10)]}
    check_banks({"t": _bank("t", 10)}, items, anchors=10)
    with pytest.raises(RecipeError, match=r"bank of task 't' \(banks/t\) holds 10 of its 10 "
                                          r"items that task 't' does not have"):
        check_banks({"t": _bank("u", 10)}, items, anchors=5, bank_dirs={"t": "banks/t"})
    with pytest.raises(RecipeError, match=r"fitness.anchors is 11.*only 10 items"):
        check_banks({"t": _bank("t", 10)}, items, anchors=11)

"""In-place weight swap == loading the merged checkpoint from disk (exactly)."""

from __future__ import annotations

import pytest
import torch

from evaluators.errors import WeightsError
from evaluators.hf import HFCausalLM, HFEncoder
from evaluators.tasks import load_task
from tests.evaluators.conftest import linear_merge, save_merged


def _answers(results):
    return [(r.item, r.prediction, r.score, r.details.get("loglikelihoods"),
             r.details.get("logits")) for r in results]


def test_causal_swap_equals_merged_checkpoint(models, tasks, merged_gpt2) -> None:
    state, merged_dir = merged_gpt2
    items = load_task(tasks["arith_gen"]).items + load_task(tasks["arith_mc"]).items
    resident = HFCausalLM(models["gpt2_a"], batch_size=16)
    before = resident.evaluate(items)
    resident.load_weights(state)
    swapped = resident.evaluate(items)
    from_disk = HFCausalLM(merged_dir, batch_size=16).evaluate(items)
    assert _answers(swapped) == _answers(from_disk)  # bit-identical log-likelihoods too
    assert _answers(swapped) != _answers(before), "the merge should change some answers"
    # GPT-2 ties lm_head to wte: the swap must reach the output layer as well.
    assert torch.equal(resident.model.lm_head.weight, state["transformer.wte.weight"])
    # Swapping back restores the original answers exactly.
    resident.load_weights(_load(models["gpt2_a"]))
    assert _answers(resident.evaluate(items)) == _answers(before)


def test_a_streamed_swap_equals_a_state_dict_swap(models, tasks, merged_gpt2) -> None:
    """``load_weights`` of (name, tensor) pairs, as a search worker streams a candidate."""
    state, merged_dir = merged_gpt2
    items = load_task(tasks["arith_mc"]).items
    resident = HFCausalLM(models["gpt2_a"], batch_size=16)
    seen = []

    def stream():
        for name, tensor in state.items():
            seen.append(name)
            yield name, tensor

    resident.load_weights(stream())
    assert seen == list(state)
    assert _answers(resident.evaluate(items)) == _answers(
        HFCausalLM(merged_dir, batch_size=16).evaluate(items))
    with pytest.raises(WeightsError, match="shape"):
        resident.load_weights(iter([("transformer.wpe.weight", torch.zeros(3, 3))]))


def _load(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_encoder_swap_equals_merged_checkpoint(models, tasks, tmp_path) -> None:
    items = load_task(tasks["topic"]).items
    state = linear_merge(models["encoder"], models["encoder_b"])
    merged_dir = save_merged(models["encoder"], state, tmp_path / "encoder_merged")
    resident = HFEncoder(models["encoder"])
    resident.load_weights(state)
    assert _answers(resident.evaluate(items)) == _answers(HFEncoder(merged_dir).evaluate(items))


def test_bad_weights_leave_the_model_untouched(models) -> None:
    resident = HFCausalLM(models["gpt2_a"])
    before = {k: v.clone() for k, v in resident.model.state_dict().items()}
    good = _load(models["gpt2_a"])
    with pytest.raises(WeightsError, match="not in the resident model"):
        resident.load_weights(good | {"transformer.h.9.attn.c_attn.weight": torch.zeros(1)})
    bad_shape = dict(good)
    bad_shape["transformer.wpe.weight"] = torch.zeros(3, 3)
    with pytest.raises(WeightsError, match="shape"):
        resident.load_weights({"transformer.h.0.ln_1.weight": torch.ones(64)} | bad_shape)
    after = resident.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

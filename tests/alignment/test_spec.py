"""Permuting a model by its spec leaves its outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from merge3.alignment import (
    PermutationSpec,
    apply_permutations,
    infer_spec,
    random_permutations,
    sequential_mlp_spec,
    transformer_mlp_spec,
)
from merge3.errors import MergeError
from merge3.zoo.digits import DigitsConfig, build_model, digits_spec


def _check_invariance(model: torch.nn.Module, spec: PermutationSpec, inputs, seed: int = 0):
    model.eval()
    with torch.no_grad():  # zero-initialised biases and unit norms would hide mistakes
        generator = torch.Generator().manual_seed(seed)
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    state = model.state_dict()
    perms = random_permutations(spec.sizes(state), seed=seed)
    # the permutations must actually move units, or the test proves nothing
    assert all((p != torch.arange(len(p)).numpy()).any() for p in perms.values())
    permuted = apply_permutations(state, spec, perms)
    changed = [n for n in spec.axes if not torch.equal(permuted[n], state[n])]
    assert len(changed) == len(spec.axes)
    with torch.no_grad():
        before = model(**inputs) if isinstance(inputs, dict) else model(inputs)
        model.load_state_dict(permuted)
        after = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    if not isinstance(before, torch.Tensor):
        before, after = before[0], after[0]
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["mlp", "resmlp"])
def test_digits_networks_invariant(arch: str) -> None:
    config = DigitsConfig(arch=arch, hidden=16, depth=3, width=12)
    torch.manual_seed(0)
    model = build_model(config)
    spec = digits_spec(config)
    if arch == "resmlp":
        # one permutation for the whole residual stream, one per block
        assert set(spec.perm_ids) == {"P_stream", "P_block_0", "P_block_1", "P_block_2"}
        # embed (2), per block fc_in.weight, fc_out.weight, fc_out.bias (3 × 3), head, norm (2)
        assert len(spec.perm_to_axes["P_stream"]) == 2 + 3 * 3 + 1 + 2
    _check_invariance(model, spec, torch.rand(7, 64))


def test_sequential_spec_read_from_state_dict() -> None:
    model = build_model(DigitsConfig(hidden=16))
    spec = sequential_mlp_spec(model.state_dict())
    assert spec.axes["layers.0.weight"] == ("P_0", None)
    assert spec.axes["layers.1.weight"] == ("P_1", "P_0")
    assert spec.axes["layers.3.weight"] == (None, "P_2")
    assert spec.sizes(model.state_dict()) == {"P_0": 16, "P_1": 16, "P_2": 16}


def _tokens() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(1))}


def test_llama_mlp_blocks_invariant() -> None:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))
    spec = infer_spec(model.state_dict())
    assert set(spec.perm_ids) == {f"model.layers.{i}.mlp.mlp_hidden" for i in range(2)}
    hidden = "model.layers.0.mlp.mlp_hidden"
    assert spec.axes["model.layers.0.mlp.down_proj.weight"] == (None, hidden)
    _check_invariance(model, spec, _tokens())


def test_gpt2_mlp_blocks_invariant() -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2,
                                       n_positions=32))
    spec = transformer_mlp_spec(model.state_dict())
    # Conv1D stores (in, out): the hidden axis of c_fc is its second
    assert spec.axes["transformer.h.1.mlp.c_fc.weight"] == (None, "transformer.h.1.mlp.mlp_hidden")
    assert spec.sizes(model.state_dict())["transformer.h.1.mlp.mlp_hidden"] == 64
    _check_invariance(model, spec, _tokens())


def test_bert_mlp_blocks_invariant() -> None:
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=24,
                                 max_position_embeddings=32))
    spec = infer_spec(model.state_dict())
    assert len(spec.perm_ids) == 2
    _check_invariance(model, spec, _tokens())


def test_spec_errors_name_the_tensor() -> None:
    state = build_model(DigitsConfig(hidden=16)).state_dict()
    bad = PermutationSpec({"layers.0.weight": ("P", None), "layers.1.weight": (None, "P"),
                           "layers.2.weight": ("P", None)})
    bad.validate(state)  # consistent sizes: 16 everywhere
    inconsistent = PermutationSpec({"layers.0.weight": ("P", "P")})  # 16 vs 64
    with pytest.raises(MergeError, match="layers.0.weight"):
        inconsistent.validate(state)
    with pytest.raises(MergeError, match="missing.weight"):
        PermutationSpec({"missing.weight": ("P", None)}).validate(state)
    with pytest.raises(MergeError, match="Fix:"):
        infer_spec({"a.weight": torch.zeros(3)})


@pytest.mark.parametrize("family", ["llama", "llama-tied", "gpt2"])
def test_whole_transformer_stream_invariant(family: str) -> None:
    from merge3.alignment.transformer_spec import transformer_stream_spec

    torch.manual_seed(0)
    if family.startswith("llama"):
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
            tie_word_embeddings=family.endswith("tied")))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2,
                                           n_positions=32))
    spec = transformer_stream_spec(model.state_dict())
    assert set(spec.perm_ids) == {"P_stream", "layer0.mlp_hidden", "layer1.mlp_hidden"}
    assert spec.sizes(model.state_dict())["P_stream"] == 16
    # every floating tensor that touches the stream is in the spec: embeddings, norms,
    # attention in/out, MLP in/out, head
    assert len(spec.perm_to_axes["P_stream"]) >= 2 + 2 * 6
    _check_invariance(model, spec, _tokens())
    with pytest.raises(MergeError):
        transformer_stream_spec(BertModel(BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=24)).state_dict())

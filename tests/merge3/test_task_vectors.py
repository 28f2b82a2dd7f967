from __future__ import annotations

import pytest
import torch

from merge3.checkpoints import Checkpoint
from merge3.errors import MergeError
from merge3.task_vectors import TaskVector, layer_index


def test_from_checkpoints_and_apply_round_trip(llama_family):
    base = Checkpoint(llama_family["base"])
    expert = Checkpoint(llama_family["expert_1"])
    tau = TaskVector.from_checkpoints(base, expert)
    assert set(tau) == {n for n in base.names() if base.get(n).is_floating_point()}
    rebuilt = tau.apply_to(base.state_dict())
    for name in base.names():
        assert torch.allclose(rebuilt[name], expert.get(name), atol=1e-6)


def test_arithmetic():
    a = TaskVector({"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5])})
    b = TaskVector({"w": torch.tensor([3.0, -1.0]), "b": torch.tensor([1.5])})
    assert torch.equal((a + b)["w"], torch.tensor([4.0, 1.0]))
    assert torch.equal((a - b)["b"], torch.tensor([-1.0]))
    assert torch.equal((-a)["w"], torch.tensor([-1.0, -2.0]))
    assert torch.equal((2 * a)["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(sum([a, b])["w"], torch.tensor([4.0, 1.0]))
    assert a.norm() == pytest.approx((1 + 4 + 0.25) ** 0.5)
    with pytest.raises(MergeError, match="differ"):
        _ = a + TaskVector({"w": torch.zeros(2)})


def test_per_layer_views(llama_family):
    tau = TaskVector.from_checkpoints(llama_family["base"], llama_family["expert_2"])
    layers = tau.layers()
    assert set(layers) == {None, 0, 1, 2}
    assert all(layer_index(name) == 1 for name in layers[1])
    assert "model.embed_tokens.weight" in layers[None]


def test_layer_index():
    assert layer_index("model.layers.12.mlp.up_proj.weight") == 12
    assert layer_index("transformer.h.3.attn.c_attn.weight") == 3
    assert layer_index("bert.encoder.layer.5.output.dense.bias") == 5
    assert layer_index("model.embed_tokens.weight") is None

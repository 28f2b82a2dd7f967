"""Whole-model merging: averaging rules and errors that name the culprit."""

from __future__ import annotations

import pytest
import torch

from merge3.alignment import align_models, average_state_dicts, naive_merge
from merge3.errors import MergeError
from merge3.zoo.digits import DigitsConfig, build_model, digits_spec

CONFIG = DigitsConfig(hidden=8, depth=2)


def _states(n: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(build_model(CONFIG).state_dict())
    return out


def test_average_keeps_integer_buffers_from_the_first_model() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "steps": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 5.0]), "steps": torch.tensor(9)}
    merged = average_state_dicts([a, b])
    assert torch.equal(merged["w"], torch.tensor([2.0, 4.0]))
    assert merged["steps"].item() == 4


def test_naive_merge_is_the_plain_mean() -> None:
    states = _states(3)
    merged = naive_merge(states, digits_spec(CONFIG)).merged
    for name, value in merged.items():
        torch.testing.assert_close(value, torch.stack([s[name] for s in states]).mean(0))


def test_errors_name_the_problem() -> None:
    states = _states(2)
    spec = digits_spec(CONFIG)
    with pytest.raises(MergeError, match="Did you mean|one of"):
        align_models(states, spec, method="c3m2")
    with pytest.raises(MergeError, match="at least two"):
        align_models(states[:1], spec, method="c2m3")
    wider = build_model(DigitsConfig(hidden=9, depth=2)).state_dict()
    with pytest.raises(MergeError, match="layers.0.weight"):
        align_models([states[0], wider], spec, method="mergemany")
    with pytest.raises(MergeError, match="same tensors"):
        align_models([states[0], {k: v for k, v in states[1].items() if k != "layers.0.bias"}],
                     spec, method="rebasin")

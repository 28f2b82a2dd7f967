"""REPAIR matches the merged model's channel statistics to the endpoints' average."""

from __future__ import annotations

import pytest
import torch

from merge3.alignment import naive_merge, rebasin_merge
from merge3.alignment.repair import channel_statistics, repair
from merge3.errors import MergeError
from merge3.zoo.digits import DigitsConfig, build_model, digits_spec, evaluate

CONFIG = DigitsConfig(hidden=32, depth=3, epochs=15)
HIDDEN = ["layers.0", "layers.1", "layers.2"]


def _models(result):
    merged = build_model(CONFIG)
    merged.load_state_dict(result.merged)
    endpoints = []
    for state in result.aligned:
        model = build_model(CONFIG)
        model.load_state_dict(state)
        endpoints.append(model)
    return merged, endpoints


def test_repaired_statistics_match_targets(digits_state_dicts, digits_data) -> None:
    merged, endpoints = _models(rebasin_merge(digits_state_dicts, digits_spec(CONFIG)))
    repaired = repair(merged, endpoints, digits_data.x_train, HIDDEN)
    stats = channel_statistics(repaired, digits_data.x_train, HIDDEN)
    targets = [channel_statistics(m, digits_data.x_train, HIDDEN) for m in endpoints]
    for name in HIDDEN:
        target_mean = torch.stack([t[name][0] for t in targets]).mean(0)
        target_std = torch.stack([t[name][1] for t in targets]).mean(0)
        torch.testing.assert_close(stats[name][0], target_mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(stats[name][1], target_std, atol=1e-4, rtol=1e-3)
    before = channel_statistics(merged, digits_data.x_train, ["layers.2"])["layers.2"][1]
    # variance collapse: the plain merge's deep units are narrower than the endpoints'
    assert before.mean() < stats["layers.2"][1].mean()


def test_repair_lowers_the_naive_merge_loss(digits_state_dicts, digits_data) -> None:
    merged, endpoints = _models(naive_merge(digits_state_dicts, digits_spec(CONFIG)))
    repaired = repair(merged, endpoints, digits_data.x_train, HIDDEN)
    loss_before = evaluate(merged, digits_data.x_test, digits_data.y_test)[1]
    loss_after = evaluate(repaired, digits_data.x_test, digits_data.y_test)[1]
    assert loss_after < loss_before


def test_repair_rejects_unknown_layers(digits_state_dicts, digits_data) -> None:
    merged, endpoints = _models(naive_merge(digits_state_dicts, digits_spec(CONFIG)))
    with pytest.raises(MergeError, match="layers.9"):
        repair(merged, endpoints, digits_data.x_train, ["layers.9"])

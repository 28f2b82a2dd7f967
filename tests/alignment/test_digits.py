"""The digits zoo: deterministic, cached, accurate, loadable."""

from __future__ import annotations

import json

import torch

from merge3.zoo.digits import (
    DigitsConfig,
    build_digits_zoo,
    load_digits_model,
    train_digits_model,
)


def test_models_are_accurate_and_different(digits_paths, digits_data) -> None:
    report = json.loads((digits_paths[0].parent / "report.json").read_text())
    assert sorted(report) == ["seed0", "seed1", "seed2"]
    states = []
    for path in digits_paths:
        model, config = load_digits_model(path)
        assert config.hidden == 32
        with torch.no_grad():
            accuracy = (model(digits_data.x_test).argmax(-1) == digits_data.y_test).float().mean()
        assert accuracy > 0.9
        assert abs(float(accuracy) - report[path.name]["test_accuracy"]) < 1e-6
        states.append(model.state_dict())
    assert not torch.equal(states[0]["layers.0.weight"], states[1]["layers.0.weight"])


def test_training_is_deterministic(digits_data) -> None:
    config = DigitsConfig(hidden=16, depth=2, epochs=2, seed=7)
    first, _ = train_digits_model(config, digits_data)
    second, _ = train_digits_model(config, digits_data)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name


def test_zoo_is_cached_until_the_recipe_changes(tmp_path) -> None:
    config = DigitsConfig(hidden=8, depth=1, epochs=1)
    (path,) = build_digits_zoo(tmp_path, seeds=[0], config=config)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    build_digits_zoo(tmp_path, seeds=[0], config=config)
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    build_digits_zoo(tmp_path, seeds=[0], config=DigitsConfig(hidden=8, depth=1, epochs=2))
    assert (path / "model.safetensors").stat().st_mtime_ns != stamp
    assert json.loads((path / "config.json").read_text())["config"]["epochs"] == 2


def test_resmlp_trains(digits_data) -> None:
    model, metrics = train_digits_model(DigitsConfig(arch="resmlp", hidden=32, width=32,
                                                     depth=2, epochs=5), digits_data)
    assert metrics["test_accuracy"] > 0.85

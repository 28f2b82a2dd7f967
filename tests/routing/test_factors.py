"""TSV-C factors and the TSV-M merges MASS rebuilds from them, against merge3's methods."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evaluators.mass import MassEvaluator
from merge3.routing import RoutingError, TaskFactors, resolve_layer


@pytest.fixture(scope="module")
def states(zoo: Path, mass_evaluator: MassEvaluator, zoo_tasks: list[str]) -> dict:
    base = mass_evaluator.mass.factors.base
    return {t: {k: load_file(str(zoo / "models" / f"expert-{t}" / "model.safetensors")).get(k, v)
                for k, v in base.items()} for t in zoo_tasks}


# One tensor of each kind: attention and MLP matrices (SVD), a bias and a LayerNorm (mean
# of τ), the position embeddings (mean of τ, not decomposed), and two tensors no expert
# moved: the word embeddings (frozen in fine-tuning, docs/zoo.md) and the unused pooler.
UNMOVED = {"embeddings.word_embeddings.weight", "pooler.dense.weight"}
NAMES = ("encoder.layer.1.attention.self.value.weight", "encoder.layer.5.output.dense.weight",
         "encoder.layer.2.intermediate.dense.bias", "encoder.layer.3.output.LayerNorm.weight",
         "embeddings.position_embeddings.weight", *sorted(UNMOVED))


def _reference(method, tensors, base, name, **params) -> torch.Tensor:
    from merge3.methods import get_method

    if all(torch.equal(t, base) for t in tensors):
        return base  # what merge3's merges do with a tensor no expert moved
    return get_method(method)(tensors, base, weight=[1.0] * len(tensors), name=name, **params)


def test_first_pass_is_tsv_m_of_all_experts(mass_evaluator, states, zoo_tasks) -> None:
    factors = mass_evaluator.mass.factors
    merged = factors.merged_state(zoo_tasks, alpha=0.7, names=NAMES)
    assert set(merged) == set(NAMES) - UNMOVED
    for name in NAMES:
        expected = _reference("tsv_m", [states[t][name] for t in zoo_tasks],
                              factors.base[name], name, alpha=0.7)
        torch.testing.assert_close(merged.get(name, factors.base[name]), expected,
                                   rtol=0, atol=1e-6)


def test_one_task_is_its_compressed_expert(mass_evaluator, states, zoo_tasks) -> None:
    factors = mass_evaluator.mass.factors
    task = zoo_tasks[0]
    merged = factors.merged_state([task], names=NAMES)
    for name in NAMES:
        expected = _reference("tsv_c", [states[task][name]], factors.base[name], name,
                              k_fraction=1 / len(zoo_tasks))
        torch.testing.assert_close(merged.get(name, factors.base[name]), expected,
                                   rtol=0, atol=1e-6)
    # k = ⌊r/T⌋ triplets per task, and the bases MASS routes on are orthonormal rows.
    matrix = "encoder.layer.4.intermediate.dense.weight"
    basis = factors.basis(matrix)
    assert tuple(basis.shape) == (len(zoo_tasks), 384 // len(zoo_tasks), 384)
    for rows in basis:
        torch.testing.assert_close(rows @ rows.T, torch.eye(rows.shape[0]), atol=1e-5, rtol=0)


def test_layer_resolution(mass_evaluator) -> None:
    factors = mass_evaluator.mass.factors
    assert resolve_layer(factors, None) == "encoder.layer.4.intermediate.dense.weight"
    assert resolve_layer(factors, -1) == "encoder.layer.5.intermediate.dense.weight"
    assert resolve_layer(factors, 2) == "encoder.layer.2.intermediate.dense.weight"
    name = "encoder.layer.3.attention.self.query"
    assert resolve_layer(factors, name) == name + ".weight"
    with pytest.raises(RoutingError, match="Did you mean.*query.weight.*Fix:"):
        resolve_layer(factors, "encoder.layer.3.attention.self.querry")
    with pytest.raises(RoutingError, match="Fix:"):
        resolve_layer(factors, 9)


def test_mismatched_experts_are_refused(mass_evaluator, states, zoo_tasks) -> None:
    base = mass_evaluator.mass.factors.base
    task = zoo_tasks[0]
    wrong = dict(states[task])
    wrong["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(8, 8)
    with pytest.raises(RoutingError, match=r"Expert 'bad'.*intermediate.*Fix:"):
        TaskFactors.from_states(base, {task: states[task], "bad": wrong})
    missing = {k: v for k, v in states[task].items() if "layer.5.output" not in k}
    with pytest.raises(RoutingError, match=r"has no tensor.*Fix:"):
        TaskFactors.from_states(base, {"short": missing})
    with pytest.raises(RoutingError, match="Fix:"):
        TaskFactors.from_states(base, {})

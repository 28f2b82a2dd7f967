"""The two passes: grouped inference equals scoring each group's merge on its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evaluators import EvaluatorError
from evaluators.hf import HFEncoder
from evaluators.items import Item
from evaluators.mass import MassEvaluator
from merge3.routing import RoutingError


def test_single_task_group_equals_that_tasks_merge(zoo: Path, evaluated, test_items,
                                                   mass_evaluator, zoo_tasks) -> None:
    """Every input routed to {t} alone scores as θ_0 + TSV-C_k(τ_t) does in the plain
    transformers evaluator, with the heads of the zoo's experts."""
    results, routing = evaluated
    for task in zoo_tasks:
        rows = routing.groups()[(task,)]
        assert len(rows) > 40
        plain = HFEncoder(zoo / "models" / f"expert-{task}", device="cpu", dtype="float32")
        plain.load_weights(mass_evaluator.mass.factors.merged_state([task]))
        expected = plain.evaluate([test_items[k] for k in rows])
        for k, reference in zip(rows, expected):
            got = results[k]
            assert (got.task, got.item, got.score) == (reference.task, reference.item,
                                                       reference.score)
            assert got.details["routed_tasks"] == [task]
            torch.testing.assert_close(torch.tensor(got.details["logits"]),
                                       torch.tensor(reference.details["logits"]),
                                       atol=1e-4, rtol=1e-4)


def test_routed_heads_score_only_inputs_routed_to_their_task(evaluated, test_items,
                                                            mass_evaluator) -> None:
    """The paper's label-free heads: with two tasks each input has one routed task, whose
    head answers it; right task -> the same score as with the item's head, wrong -> 0."""
    results, routing = evaluated
    rows = list(range(0, len(test_items), 5))
    routed = MassEvaluator(mass_evaluator.mass, mass_evaluator.head_dirs,
                           fallback_dirs=mass_evaluator.fallback_dirs, head_selection="routed")
    got = routed.evaluate([test_items[k] for k in rows])
    wrong = 0
    for result, k in zip(got, rows):
        own = routing.selections[k] == (test_items[k].task,)
        assert result.score == (results[k].score if own else 0.0)
        assert result.details["head"] == routing.selections[k][0]
        wrong += not own
    assert wrong > 0  # the check above saw both cases


def test_what_mass_refuses(mass_evaluator) -> None:
    with pytest.raises(RoutingError, match="Fix:"):
        mass_evaluator.load_weights({})
    item = Item(task="gen", id="g-1", format="generative", prompt="1+1=", target="2")
    with pytest.raises(EvaluatorError, match="classification"):
        mass_evaluator.evaluate([item])
    assert mass_evaluator.evaluate([]) == []
    with pytest.raises(RoutingError, match="head selection"):
        MassEvaluator(mass_evaluator.mass, {}, head_selection="best")
    with pytest.raises(RoutingError, match="No head for task 'nowhere'.*Fix:"):
        mass_evaluator.head("nowhere")

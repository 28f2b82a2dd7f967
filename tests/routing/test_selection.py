"""The z-scored softmax top-k selection, checked against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from merge3.routing import RoutingError, group_by_selection, select_tasks, task_weights


def _by_hand(logits: list[float], temperature: float = 1.0) -> list[float]:
    n = len(logits)
    mean = sum(logits) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in logits) / (n - 1)) + 1e-6  # unbiased
    z = [(x - mean) / std / temperature for x in logits]
    total = sum(math.exp(v) for v in z)
    return [math.exp(v) / total for v in z]


def test_weights_are_the_softmax_of_z_scores() -> None:
    rows = [[-1.0, -2.0, -4.0, -7.0], [-3.0, -3.1, -2.9, -10.0], [0.5, 0.5, 0.5, 0.4]]
    got = task_weights(torch.tensor(rows, dtype=torch.float64))
    for row, expected in zip(got.tolist(), map(_by_hand, rows)):
        assert row == pytest.approx(expected, abs=1e-12)
    hot = task_weights(torch.tensor(rows[:1], dtype=torch.float64), temperature=0.5)
    assert hot[0].tolist() == pytest.approx(_by_hand(rows[0], 0.5), abs=1e-12)


def test_weights_do_not_depend_on_the_scale_of_the_residuals() -> None:
    logits = torch.tensor([[-1.0, -2.0, -4.0, -7.0]], dtype=torch.float64)
    assert torch.allclose(task_weights(logits), task_weights(100 * logits - 3), atol=1e-6)


def test_threshold_and_at_most_k_tasks() -> None:
    # By hand: mean −3.5, deviations (2.5, 1.5, −0.5, −3.5), unbiased std √(21/3) = 2.6458,
    # z = (0.9449, 0.5669, −0.1890, −1.3229), exp(z) = (2.5726, 1.7627, 0.8278, 0.2664),
    # weights = exp(z) / 5.4295. Only tasks 0 and 1 pass 0.2.
    weights = task_weights(torch.tensor([[-1.0, -2.0, -4.0, -7.0]], dtype=torch.float64))
    assert weights[0].tolist() == pytest.approx([0.4738, 0.3247, 0.1525, 0.0491], abs=1e-4)
    assert select_tasks(weights) == [(0, 1)]
    assert select_tasks(weights, threshold=0.1) == [(0, 1, 2)]
    assert select_tasks(weights, threshold=0.04) == [(0, 1, 2)]  # 4 pass, k = 3 kept
    assert select_tasks(weights, threshold=0.04, max_tasks=2) == [(0, 1)]
    assert select_tasks(weights, threshold=0.9) == [(0,)]  # none passes: the argmax


def test_selections_are_in_task_order_and_grouped() -> None:
    weights = torch.tensor([[0.1, 0.3, 0.6], [0.6, 0.3, 0.1], [0.05, 0.9, 0.05],
                            [0.3, 0.6, 0.1]])
    selections = select_tasks(weights)
    assert selections == [(1, 2), (0, 1), (1,), (0, 1)]
    assert group_by_selection(selections) == {(1, 2): [0], (0, 1): [1, 3], (1,): [2]}


def test_two_tasks_always_select_one_unless_tied() -> None:
    weights = task_weights(torch.tensor([[-1.0, -1.5], [-9.0, -2.0], [-3.0, -3.0]]))
    low, high = 1 / (1 + math.exp(math.sqrt(2))), 1 / (1 + math.exp(-math.sqrt(2)))
    assert weights[0].tolist() == pytest.approx([high, low], abs=1e-5)  # 0.804 / 0.196
    assert select_tasks(weights) == [(0,), (1,), (0, 1)]


def test_bad_settings_are_refused_with_a_fix() -> None:
    with pytest.raises(RoutingError, match="Fix:"):
        task_weights(torch.zeros(2, 3), temperature=0.0)
    with pytest.raises(RoutingError, match="Fix:"):
        select_tasks(torch.ones(1, 3) / 3, max_tasks=0)

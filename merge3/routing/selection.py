"""MASS task selection: z-scored softmax over router logits, threshold, at most k tasks.

Crisostomi et al. 2025, "MASS: MoErging through Adaptive Subspace Selection" (reference
code: github.com/crisostomi/mass, ``MassGate._logits_to_coefficients`` and
``_filter_datasets``). Per input, the logits (−residual norm per task) are standardised
across tasks — mean and the unbiased standard deviation (n − 1, torch's default) plus
1e-6 — then ``softmax(z / temperature)``. The tasks whose weight exceeds ``threshold``
are selected; if more than ``max_tasks`` pass, the ``max_tasks`` largest are kept; if none
passes, the argmax alone. A selection is returned in task order, so inputs that select
the same set share one group whatever the order of their weights.

With two tasks the z-scores are always ±1/√2, so the weights are 0.80 / 0.20 and only the
argmax passes 0.2: two-task MASS always routes to exactly one expert (unless tied).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from merge3.routing.errors import RoutingError

__all__ = ["task_weights", "select_tasks", "group_by_selection", "STD_EPS"]

STD_EPS = 1e-6


def task_weights(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, T) logits -> (B, T) weights: softmax of the per-row z-scores / temperature."""
    if logits.dim() != 2:
        raise RoutingError(f"Router logits must be (inputs, tasks), not {tuple(logits.shape)}.")
    if temperature <= 0:
        raise RoutingError(f"temperature must be > 0, not {temperature}.",
                           fix="use the paper's 1.0 or another positive value.")
    if logits.shape[1] == 1:
        return torch.ones_like(logits)
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True) + STD_EPS
    return torch.softmax((logits - mean) / std / temperature, dim=1)


def select_tasks(
    weights: torch.Tensor, threshold: float = 0.2, max_tasks: int = 3
) -> list[tuple[int, ...]]:
    """Per row of (B, T) weights: the task indices with weight > ``threshold`` (at most
    ``max_tasks``, the largest; the argmax when none passes), in increasing index order."""
    if max_tasks < 1:
        raise RoutingError(f"max_tasks must be >= 1, not {max_tasks}.",
                           fix="select at least one task per input (the paper uses 3).")
    out = []
    for row in weights:
        passed = torch.nonzero(row > threshold).flatten().tolist()
        if len(passed) > max_tasks:
            passed = torch.topk(row, max_tasks).indices.tolist()
        if not passed:
            passed = [int(torch.argmax(row))]
        out.append(tuple(sorted(passed)))
    return out


def group_by_selection(selections: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
    """{selected task set: positions of the inputs that selected it}, in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for position, selected in enumerate(selections):
        groups.setdefault(tuple(selected), []).append(position)
    return groups

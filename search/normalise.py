"""Per-task normalisers for the ``scalar`` sampler's one objective: mean normalised accuracy.

A task's normalised accuracy is the candidate's estimate divided by what the task's own
expert scores on it, the usual yardstick of model merging (Ilharco et al., "Editing
models with task arithmetic", ICLR 2023, and TIES-Merging, Yadav et al., NeurIPS 2023,
report merged accuracy as a fraction of each fine-tuned model's). Averaging the
normalised accuracies weighs a hard task (expert at 0.67) as much as an easy one (expert
at 0.92), where the plain mean lets the easy tasks decide.

Where each normaliser comes from, in this order (:func:`task_normalisers` says which):

1. ``bank``: the task's expert — the expert whose config name is the task's name — has a
   row in the task's item bank: its accuracy on the bank's items (the mean of its row of
   past responses, what the estimates estimate).
2. ``none``: no such expert, or no bank (``estimator: full``): 1.0, i.e. the plain
   accuracy.

The experts' accuracies do not change during a search (a bank recalibrated with front
members keeps the experts' rows), so a resumed search normalises as the first session did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from search.fitness import expert_rows

if TYPE_CHECKING:
    from search.prepare import SearchInputs

__all__ = ["Normaliser", "task_normalisers", "normalised_mean", "normalised_mean_of"]

log = logging.getLogger("merge3.search")


@dataclass(frozen=True, slots=True)
class Normaliser:
    """What a task's estimate is divided by, and where that number came from."""

    value: float
    source: str  # "bank" (the task's expert's row in its bank) or "none" (1.0)
    expert: str | None = None  # the bank model id of the task's expert


def task_normalisers(objectives: Sequence[str], banks: Mapping[str, object],
                     experts: Mapping[str, str]) -> dict[str, Normaliser]:
    """task -> its normaliser (see the module docstring): the accuracy, on the task's bank
    items, of the expert named after the task, else 1.0. ``banks``: task -> ItemBank;
    ``experts``: expert config name -> model path (as the search resolved them)."""
    out = {}
    for task in objectives:
        bank = banks.get(task)
        rows = expert_rows(list(bank.model_ids), {task: experts[task]}) \
            if bank is not None and task in experts else []
        if rows:
            answers = np.asarray(bank.responses[rows[0]], dtype=float)
            accuracy = float(np.nanmean(answers)) if np.isfinite(answers).any() else np.nan
            if np.isfinite(accuracy) and accuracy > 0:
                out[task] = Normaliser(accuracy, "bank", str(bank.model_ids[rows[0]]))
                continue
        out[task] = Normaliser(1.0, "none")
    return out


def normalised_mean_of(values: Sequence[float], normalisers: Sequence[float]) -> float:
    """The mean over tasks of ``values[i] / normalisers[i]``."""
    if len(values) != len(normalisers):
        raise ValueError(f"{len(values)} task values but {len(normalisers)} normalisers")
    return float(np.mean(np.asarray(values, dtype=float) / np.asarray(normalisers, dtype=float)))


def normalised_mean(inputs: SearchInputs) -> Callable[[Sequence[float]], float]:
    """The ``scalar`` sampler's scalarisation: task estimates (in ``inputs.objectives``
    order) -> their mean normalised accuracy; the normalisers are logged once."""
    normalisers = task_normalisers(inputs.objectives, inputs.fitness.banks, inputs.experts)
    log.info("mean normalised accuracy: %s", ", ".join(
        f"{t} / {n.value:.3f} ({n.source})" for t, n in normalisers.items()))
    divisors = [normalisers[t].value for t in inputs.objectives]
    return lambda values: normalised_mean_of(values, divisors)

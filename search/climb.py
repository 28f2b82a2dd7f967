"""Did the search climb? Generation 0's best member against the final one, fully evaluated.

A search's front is chosen on IRT estimates from a few anchor items, and the member with
the best estimated mean is partly the luckiest estimate (the winner's curse). So the
question "did the generations after the random initial population find a better merge?"
is answered on true accuracies: :func:`compare_climb` takes generation 0's best-mean
member and the final front's best-mean member (both by estimated mean accuracy, as the
printed front orders them), scores each on every item of every objective task — the
first ``evaluation.limit`` where set, as the loop's full evaluations do — in this
process, on one :class:`~search.workers.CandidateWorker`, and reports their true mean
accuracies and the generation the final best came from. Members scored fully before
(the loop's ``full_evals.jsonl``, an earlier comparison's ``climb.json``) are not scored
again; the comparison is written to ``climb.json`` in the run directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.config import SearchConfig
from search.fitness import full_accuracy
from search.full_eval import FULL_EVALS
from search.records import TrialRecord, finished_records, front_of

__all__ = ["Climb", "best_mean", "compare_climb", "search_records", "CLIMB_FILE"]

CLIMB_FILE = "climb.json"  # the run directory's comparison of generation 0 and the end


@dataclass(frozen=True)
class Climb:
    """Generation 0's best-mean member and the final front's, with true accuracies."""

    first: TrialRecord  # generation 0's best estimated mean
    final: TrialRecord  # the final front's best estimated mean
    first_accuracy: dict[str, float]  # task -> accuracy on every item
    final_accuracy: dict[str, float]
    normalisers: dict[str, float]  # task -> its expert's accuracy (1.0: unknown)

    @property
    def first_mean(self) -> float:
        return float(np.mean(list(self.first_accuracy.values())))

    @property
    def final_mean(self) -> float:
        return float(np.mean(list(self.final_accuracy.values())))

    def normalised_mean(self, accuracy: dict[str, float]) -> float:
        return float(np.mean([v / self.normalisers.get(t, 1.0) for t, v in accuracy.items()]))

    @property
    def climbed(self) -> bool:
        """The final best is from a later generation and truly above generation 0's."""
        return bool(self.final.generation and self.final_mean > self.first_mean)

    def to_json(self) -> dict:
        return {"first": {"trial": self.first.number, "generation": self.first.generation,
                          "estimated_mean": self.first.mean_estimate,
                          "accuracy": self.first_accuracy, "mean": self.first_mean},
                "final": {"trial": self.final.number, "generation": self.final.generation,
                          "estimated_mean": self.final.mean_estimate,
                          "accuracy": self.final_accuracy, "mean": self.final_mean},
                "normalisers": self.normalisers, "climbed": self.climbed}


def best_mean(records: Sequence[TrialRecord]) -> TrialRecord:
    """The complete record with the best estimated mean (ties: the earlier trial)."""
    done = [r for r in records if r.complete and r.mean_estimate is not None]
    if not done:
        raise ValueError("no complete candidate to compare")
    return max(done, key=lambda r: (r.mean_estimate, -r.number))


def search_records(config: SearchConfig, run_dir: Path) -> list[TrialRecord]:
    """Every finished record of the search ``config`` in ``run_dir`` (read-only)."""
    import optuna

    storage = config.strategy.storage or f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=config.name, storage=storage)
    return finished_records(study, config.objective_tasks)


def _scored_before(run_dir: Path) -> dict[int, dict[str, float]]:
    """trial -> accuracy per task, of the members the search or an earlier comparison
    scored on every item."""
    scored: dict[int, dict[str, float]] = {}
    path = run_dir / FULL_EVALS
    if path.exists():
        for line in path.read_text().splitlines():
            if line:
                row = json.loads(line)
                scored[int(row["trial"])] = dict(row["accuracy"])
    if (run_dir / CLIMB_FILE).exists():
        earlier = json.loads((run_dir / CLIMB_FILE).read_text())
        for member in (earlier["first"], earlier["final"]):
            scored[int(member["trial"])] = dict(member["accuracy"])
    return scored


def compare_climb(config: SearchConfig, run_dir: Path, *, threads: int = 1) -> Climb:
    """Generation 0's best-mean member vs the final front's, both scored on every item
    (see the module docstring); ``threads``: torch threads of the in-process worker."""
    from search.normalise import task_normalisers
    from search.prepare import prepare
    from search.workers import CandidateWorker, WorkerSpec

    objectives = config.objective_tasks
    records = search_records(config, run_dir)
    first = best_mean([r for r in records if r.generation == 0])
    final = best_mean(front_of(records, objectives))
    inputs = prepare(config)
    accuracy = _scored_before(run_dir)
    missing = [r for r in ((first,) if first.number == final.number else (first, final))
               if r.number not in accuracy]
    if missing:
        worker = CandidateWorker(WorkerSpec(
            inputs.evaluated_model, inputs.experts, inputs.tasks,
            evaluation=config.evaluation, threads=threads,
            expert_storage=config.expert_storage))
        items = inputs.fitness.full_items()
        for record in missing:
            result = worker.evaluate(record.number, record.recipe, items)
            accuracy[record.number] = full_accuracy(result.responses)
    normalisers = task_normalisers(objectives, inputs.fitness.banks, inputs.experts)
    climb = Climb(first, final, {t: accuracy[first.number][t] for t in objectives},
                  {t: accuracy[final.number][t] for t in objectives},
                  {t: n.value for t, n in normalisers.items()})
    (run_dir / CLIMB_FILE).write_text(json.dumps(climb.to_json(), indent=2) + "\n")
    return climb

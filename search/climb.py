"""Did the search climb? Generation 0's best member against the final one, fully evaluated.

A search's front is chosen on IRT estimates from a few anchor items, and the member with
the best estimated mean is partly the luckiest estimate (the winner's curse). So the
question "did the generations after the random initial population find a better merge?"
is answered on true accuracies: :func:`compare_climb` takes generation 0's best-mean
member and the final front's best-mean member (both by estimated mean accuracy, as the
printed front orders them), scores each on every item of every objective task — the
first ``evaluation.limit`` where set, as the loop's full evaluations do — in this
process, on one :class:`~search.workers.CandidateWorker`, and reports their true mean
accuracies, a paired bootstrap interval of their difference, and the generation the
final best came from. Members scored fully before
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


Responses = dict[str, dict[str, float]]  # task -> item id -> score


@dataclass(frozen=True)
class Climb:
    """Generation 0's best-mean member and the final front's, with their answers to every
    item (task -> item id -> score) and the tasks' normalisers."""

    first: TrialRecord  # generation 0's best estimated mean
    final: TrialRecord  # the final front's best estimated mean
    first_responses: Responses
    final_responses: Responses
    normalisers: dict[str, float]  # task -> its expert's accuracy (1.0: unknown)

    @property
    def first_accuracy(self) -> dict[str, float]:
        return full_accuracy(self.first_responses)

    @property
    def final_accuracy(self) -> dict[str, float]:
        return full_accuracy(self.final_responses)

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

    def interval(self, level: float = 0.95, resamples: int = 2000, seed: int = 0
                 ) -> tuple[float, float]:
        """A paired bootstrap interval of ``final_mean − first_mean``: each task's items
        are resampled with replacement, the same items for both members (Efron &
        Tibshirani 1993, ch. 13; paired as in Koehn 2004 for comparing two systems on
        one test set)."""
        rng = np.random.default_rng(seed)
        differences = np.zeros(resamples)
        for task, first in self.first_responses.items():
            items = sorted(first)
            paired = (np.array([self.final_responses[task][i] for i in items])
                      - np.array([first[i] for i in items]))
            picks = rng.integers(len(items), size=(resamples, len(items)))
            differences += paired[picks].mean(axis=1)
        differences /= len(self.first_responses)
        tail = (1.0 - level) / 2
        low, high = np.quantile(differences, [tail, 1.0 - tail])
        return float(low), float(high)

    def to_json(self) -> dict:
        low, high = self.interval()

        def member(record: TrialRecord, responses: Responses) -> dict:
            accuracy = full_accuracy(responses)
            return {"trial": record.number, "generation": record.generation,
                    "estimated_mean": record.mean_estimate, "accuracy": accuracy,
                    "mean": float(np.mean(list(accuracy.values()))),
                    "normalised_mean": self.normalised_mean(accuracy),
                    "responses": responses}

        return {"first": member(self.first, self.first_responses),
                "final": member(self.final, self.final_responses),
                "difference": self.final_mean - self.first_mean,
                "interval95": [low, high], "normalisers": self.normalisers,
                "climbed": self.climbed}


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


def _scored_before(run_dir: Path) -> dict[int, Responses]:
    """trial -> its answers to every item, of the members the search (full evaluations
    that kept their responses) or an earlier comparison scored."""
    scored: dict[int, Responses] = {}
    path = run_dir / FULL_EVALS
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line) if line else {}
            if "responses" in row:
                scored[int(row["trial"])] = row["responses"]
    if (run_dir / CLIMB_FILE).exists():
        earlier = json.loads((run_dir / CLIMB_FILE).read_text())
        for member in (earlier["first"], earlier["final"]):
            if "responses" in member:
                scored[int(member["trial"])] = member["responses"]
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
    scored = _scored_before(run_dir)
    missing = [r for r in ((first,) if first.number == final.number else (first, final))
               if r.number not in scored]
    if missing:
        worker = CandidateWorker(WorkerSpec(
            inputs.evaluated_model, inputs.experts, inputs.tasks,
            evaluation=config.evaluation, threads=threads,
            expert_storage=config.expert_storage))
        items = inputs.fitness.full_items()
        for record in missing:
            scored[record.number] = worker.evaluate(record.number, record.recipe,
                                                    items).responses
    normalisers = task_normalisers(objectives, inputs.fitness.banks, inputs.experts)
    climb = Climb(first, final, {t: scored[first.number][t] for t in objectives},
                  {t: scored[final.number][t] for t in objectives},
                  {t: n.value for t, n in normalisers.items()})
    (run_dir / CLIMB_FILE).write_text(json.dumps(climb.to_json(), indent=1) + "\n")
    return climb

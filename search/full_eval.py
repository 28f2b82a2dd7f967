"""Full evaluation of the front: true accuracies beside the estimates, and the item banks
recalibrated with them so they follow models stronger than their calibration population.

Every ``fitness.full_every`` generations the front's members not scored yet answer every
item of every objective task (the first ``evaluation.limit`` per task when set). Each
result is appended to ``full_evals.jsonl`` (trial, generation, accuracy per task) and
logged as ``full/<task>`` metrics on the candidate's MLflow run; with
``fitness.recalibrate`` the banks are refit with those responses and saved under
``banks/`` (artifacts ``item_banks/genNNN/<task>``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from search.faults import REFIT_STAGE, kill_point
from search.fitness import Fitness, full_accuracy
from search.records import TrialRecord
from search.tracking import Tracker
from search.workers import CandidateResult, WorkerPool

__all__ = ["evaluate_front_fully", "FULL_EVALS"]

log = logging.getLogger("merge3.search")
FULL_EVALS = "full_evals.jsonl"


def _logged(log_path: Path) -> list[dict]:
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line]


def _not_in_banks(logged: list[dict], fitness: Fitness) -> dict[str, dict]:
    """Fully evaluated members whose responses a bank refit has not taken yet (a kill came
    between their full evaluation and the refit): model id -> task -> item -> score."""
    in_banks = {m for bank in fitness.banks.values() for m in bank.model_ids}
    return {f"trial-{r['trial']}": r["responses"] for r in logged
            if "responses" in r and f"trial-{r['trial']}" not in in_banks}


class _FullResults:
    """Takes each full evaluation as it arrives: logged at once, kept for recalibration."""

    def __init__(self, log_path: Path, tracker: Tracker, generation: int) -> None:
        self.log_path, self.tracker, self.generation = log_path, tracker, generation
        self.responses: dict[str, dict[str, dict[str, float]]] = {}  # model -> task -> items
        self.item_evaluations = 0

    def __call__(self, result: CandidateResult) -> None:
        if result.error:
            log.warning("full evaluation of trial %s failed: %s", result.key, result.error)
            return
        self.item_evaluations += result.items_evaluated
        # the responses too: a search killed before the banks were refit recovers them
        record = {"trial": result.key, "generation": self.generation,
                  "accuracy": full_accuracy(result.responses), "responses": result.responses}
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.responses[f"trial-{result.key}"] = result.responses
        self.tracker.log_trial_metrics(result.key, {f"full/{t}": v
                                                    for t, v in record["accuracy"].items()})


def evaluate_front_fully(front: list[TrialRecord], pool: WorkerPool, fitness: Fitness,
                         tracker: Tracker, run_dir: Path, generation: int, *,
                         recalibrate: bool) -> int:
    """Score the members of ``front`` not scored before on the full items; the number of
    item evaluations it took."""
    log_path = run_dir / FULL_EVALS
    logged = _logged(log_path)
    done = {r["trial"] for r in logged}
    members = [r for r in front if r.number not in done]
    pending = _not_in_banks(logged, fitness) if recalibrate else {}
    if not members and not pending:
        return 0
    results = _FullResults(log_path, tracker, generation)
    results.responses.update(pending)
    if members:
        items = fitness.full_items()
        pool.run([(r.number, r.recipe, items) for r in members], results)
    if log_path.exists():
        tracker.log_artifact(log_path)
    kill_point(REFIT_STAGE)
    if recalibrate and results.responses:
        for task, path in fitness.recalibrate(results.responses, run_dir / "banks").items():
            tracker.log_artifact(path, f"item_banks/gen{generation:03d}/{task}")
    return results.item_evaluations

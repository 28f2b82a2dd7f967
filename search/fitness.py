"""Fitness: a candidate's responses on anchor items -> one accuracy estimate per task.

With ``estimator: full`` every item of every objective task is scored and the fitness is
the plain accuracy (the reference the IRT estimates are measured against). Otherwise
each task has an item bank (``fitness.item_bank``: a bank directory per task — a folder
holding one bank per task name, or a single bank for a single task); k anchors are
selected once per bank and the chosen IRT estimator (mp-IRT by default, MERGE³) turns
the candidate's anchor answers into an estimate with a standard error. For mp-IRT the
endpoints are the experts, looked up among the bank's models by their config name or by
their directory's name (what ``merge3 eval --log-samples`` and the zoo's logs record);
a bank that holds none of them falls back to the bank models nearest the candidate.

Adaptive fitness (``fitness.adaptive``, :meth:`Fitness.make_adaptive`): the anchors are a
shared core; after it, :meth:`Fitness.next_items` gives each candidate top-up batches
chosen by Fisher information at its own ability (irt.AdaptiveTest, one per task) until
each task's test is done, and the estimates are the estimator's on the core + top-up
union. A close call's re-scoring items are then one more such top-up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irt.estimators import DEFAULT_ESTIMATOR, ESTIMATORS
from merge3.errors import RecipeError

__all__ = ["Fitness", "TaskScore", "expert_rows", "full_accuracy", "strip_task"]

log = logging.getLogger(__name__)


def _uses_endpoints(estimator: str) -> bool:
    """Whether the estimator reads the experts' abilities (mp-IRT's endpoints)."""
    return estimator != "full" and ESTIMATORS.get(estimator).uses_endpoints


@dataclass(frozen=True)
class TaskScore:
    estimate: float
    stderr: float
    items: int


def expert_rows(model_ids: list[str], experts: Mapping[str, str]) -> list[int]:
    """Bank rows of the experts (config name -> model path or name), found by the config
    name or by the last component of the path; experts the bank lacks are left out."""
    rows = {m: i for i, m in enumerate(model_ids)}
    found = []
    for name, ref in experts.items():
        for key in (name, Path(str(ref)).name):
            if key in rows:
                found.append(rows[key])
                break
    return found


def strip_task(task: str, item_id: str) -> str:
    """A bank's ``task/id`` as the task's own item id."""
    prefix = f"{task}/"
    return item_id[len(prefix):] if item_id.startswith(prefix) else item_id


class Fitness:
    """Which items to ask a candidate, and how to turn its answers into objectives."""

    def __init__(self, tasks: list[str], estimator: str = DEFAULT_ESTIMATOR,
                 item_bank: str | None = None, anchors: int = 50,
                 anchor_method: str = "kmeans-irt", seed: int = 0,
                 experts: Mapping[str, str] | None = None, rescore_items: int = 0,
                 limit: Mapping[str, list[str]] | None = None) -> None:
        self.tasks = list(tasks)
        self.estimator = estimator
        # task -> the items a full evaluation scores (`evaluation.limit`; absent: all)
        self.limit = dict(limit or {})
        self.banks = {}
        self.prepared = {}
        self.anchor_sets = {}
        self.extended: dict = {}  # task -> AnchorEstimator on anchors + re-scoring items
        self.extra_items: dict[str, list[str]] = {}
        self.endpoints: dict[str, np.ndarray | None] = {}
        self.bank_dirs: dict[str, str] = {}  # task -> the bank's directory
        self.adaptive = None  # search.config.AdaptiveSpec once make_adaptive is called
        self.adaptive_rescore = 0  # a close call's Fisher top-up items per task
        self.tests: dict = {}  # task -> irt.AdaptiveTest on the bank and its core
        self._id_maps: dict[str, dict[str, str]] = {}  # task -> {task's item id: bank id}
        if estimator == "full":
            return
        from irt import AnchorEstimator, extend_anchors, load_bank, select_anchors

        root = Path(item_bank or "")
        for task in self.tasks:
            directory = root / task if (root / task).is_dir() else root
            if directory == root and len(self.tasks) > 1 and not (root / task).is_dir():
                raise RecipeError(
                    f"fitness.item_bank {root} has no bank for task {task!r}.",
                    fix=f"put one bank per task in {root}/<task>/ (merge3 irt calibrate).",
                )
            bank = load_bank(directory)
            self.bank_dirs[task] = str(directory)
            anchor_set = select_anchors(bank, min(anchors, bank.selectable.size), anchor_method,
                                        seed=seed)
            self.banks[task] = bank
            self.anchor_sets[task] = anchor_set
            self.prepared[task] = AnchorEstimator(bank, anchor_set)
            if rescore_items:
                wider = extend_anchors(bank, anchor_set, rescore_items)
                self.extended[task] = AnchorEstimator(bank, wider)
                have = set(anchor_set.item_ids)
                self.extra_items[task] = [strip_task(task, i) for i in wider.item_ids
                                          if i not in have]
            found = expert_rows(list(bank.model_ids), experts or {})
            self.endpoints[task] = np.array([found]) if found else None
            if _uses_endpoints(estimator) and experts and len(found) < len(experts):
                log.warning("the %s item bank holds %d of the %d experts; mp-IRT's endpoints "
                            "are %s", task, len(found), len(experts),
                            "those" if found else "the bank models nearest each candidate")

    def full_items(self) -> dict[str, list[str] | None]:
        """task -> the item ids a full evaluation scores (None: all of the task's items)."""
        return {task: self.limit.get(task) for task in self.tasks}

    def items_for_candidate(self) -> dict[str, list[str] | None]:
        """task -> the item ids a candidate answers (None: all of the task's items)."""
        if self.estimator == "full":
            return self.full_items()
        return {task: [strip_task(task, i) for i in self.anchor_sets[task].item_ids]
                for task in self.tasks}

    # -- adaptive fitness --------------------------------------------------------------
    def make_adaptive(self, spec: object, rescore_items: int = 0) -> None:
        """Turn on adaptive testing (``spec``: search.config.AdaptiveSpec); the anchors
        already selected are the core. Re-scoring becomes a Fisher top-up of
        ``rescore_items`` items per task beyond the budget (the fixed extension is dropped)."""
        if self.estimator == "full":
            raise RecipeError("fitness.adaptive needs an IRT estimator, not 'full'.",
                              fix="set fitness.estimator to an irt estimator (gmp-irt).")
        self.adaptive = spec
        self.adaptive_rescore = int(rescore_items)
        self.extended, self.extra_items = {}, {}
        self.tests = {task: self._adaptive_test(task) for task in self.tasks}

    def _adaptive_test(self, task: str, *, budget: int | None = None,
                       batch: int | None = None, se_target: float | None | str = "spec"
                       ) -> object:
        from irt import AdaptiveTest

        spec = self.adaptive
        return AdaptiveTest(self.banks[task], self.anchor_sets[task],
                            budget=spec.budget if budget is None else budget,
                            batch=spec.batch if batch is None else batch,
                            se_target=spec.se_target if se_target == "spec" else se_target,
                            estimator=self.estimator, criterion=spec.criterion)

    def _bank_answers(self, task: str, answers: Mapping[str, float]) -> dict[str, float]:
        """A task's answers keyed by bank item id (items outside the bank are left out)."""
        lookup = self._bank_ids(task)
        return {lookup[i]: v for i, v in answers.items() if i in lookup}

    def _bank_ids(self, task: str) -> dict[str, str]:
        """{task's item id: bank item id}; a refit bank keeps its items (adopt_banks)."""
        if task not in self._id_maps:
            self._id_maps[task] = {strip_task(task, i): i for i in self.banks[task].item_ids}
        return self._id_maps[task]

    def _endpoints(self, task: str) -> np.ndarray | None:
        return self.endpoints[task] if _uses_endpoints(self.estimator) else None

    def next_items(self, responses: Mapping[str, Mapping[str, float]]
                   ) -> dict[str, list[str]]:
        """task -> the next top-up batch of a candidate's adaptive tests (tasks whose test
        is done are left out; {} when every test is done or adaptive testing is off)."""
        out = {}
        for task, test in self.tests.items():
            answers = self._bank_answers(task, responses.get(task, {}))
            items = test.next_items(answers, self._endpoints(task))
            if items:
                out[task] = [strip_task(task, i) for i in items]
        return out

    @property
    def can_rescore(self) -> bool:
        """Whether close calls get more items (fixed extension, or adaptive top-up)."""
        return bool(self.extra_items) or (self.adaptive is not None
                                          and self.adaptive_rescore > 0)

    def rescore_items_for(self, responses: Mapping[str, Mapping[str, float]] | None = None
                          ) -> dict[str, list[str]]:
        """task -> the extra item ids a close call answers (empty: re-scoring is off).

        Adaptive: ``adaptive_rescore`` more items per task by Fisher information at the
        candidate's ability from ``responses`` (beyond the budget, no SE stop)."""
        if self.adaptive is None:
            return dict(self.extra_items)
        out = {}
        for task in self.tasks:
            answers = self._bank_answers(task, (responses or {}).get(task, {}))
            test = self._adaptive_test(task, budget=len(answers) + self.adaptive_rescore,
                                       batch=self.adaptive_rescore, se_target=None)
            items = test.next_items(answers, self._endpoints(task))
            if items:
                out[task] = [strip_task(task, i) for i in items]
        return out

    def score(self, responses: Mapping[str, Mapping[str, float]], *, extended: bool = False
              ) -> dict[str, TaskScore]:
        """Per-task estimates from a candidate's responses (task -> item id -> score);
        ``extended``: on the anchors plus the re-scoring items (see rescore_items_for).
        Adaptive: on every bank item the candidate answered (core + top-ups)."""
        out = {}
        for task in self.tasks:
            answers = responses[task]
            if self.adaptive is not None:
                bank_answers = self._bank_answers(task, answers)
                value, stderr = self.tests[task].estimate(bank_answers, self._endpoints(task))
                out[task] = TaskScore(value, stderr, len(bank_answers))
                continue
            if self.estimator == "full":
                values = np.array(list(answers.values()), dtype=float)
                mean = float(values.mean()) if values.size else math.nan
                stderr = math.sqrt(max(mean * (1 - mean), 0.0) / max(values.size, 1))
                out[task] = TaskScore(mean, stderr, int(values.size))
                continue
            prepared = (self.extended if extended else self.prepared)[task]
            anchor_ids = prepared.anchors.item_ids
            y = np.array([[answers.get(strip_task(task, i), np.nan) for i in anchor_ids]],
                         dtype=float)
            y = np.where(np.isnan(y), np.nan, (y >= 0.5).astype(float))  # binary, as calibrated
            value, stderr = prepared.predict(
                self.estimator, y,
                self.endpoints[task] if _uses_endpoints(self.estimator) else None)
            out[task] = TaskScore(float(value[0]), float(stderr[0]), len(anchor_ids))
        return out

    def _use_bank(self, task: str, bank: object) -> None:
        """Score ``task`` with ``bank`` (a refit of its bank) on the same anchors."""
        from irt import AnchorEstimator

        self.banks[task] = bank
        self.prepared[task] = AnchorEstimator(bank, self.anchor_sets[task])
        if task in self.extended:
            self.extended[task] = AnchorEstimator(bank, self.extended[task].anchors)
        if self.adaptive is not None:
            self.tests[task] = self._adaptive_test(task)

    def adopt_banks(self, directory: Path) -> list[str]:
        """Take the recalibrated banks an earlier session of this search saved under
        ``directory/<task>`` (a resumed search goes on from them, not from the original
        banks); the anchors stay those selected on the original bank. Tasks adopted."""
        from irt import load_bank

        adopted = []
        for task, bank in list(self.banks.items()):
            saved = directory / task
            if not saved.is_dir():
                continue
            refit = load_bank(saved)
            if tuple(refit.item_ids) != tuple(bank.item_ids):
                raise RecipeError(
                    f"The recalibrated {task} bank in {saved} has other items than the "
                    "search's item bank.",
                    fix=f"resume with the item bank the search started with, or remove "
                        f"{saved} to go on from the original bank.")
            self._use_bank(task, refit)
            adopted.append(task)
        return adopted

    def recalibrate(self, evaluated: Mapping[str, Mapping[str, Mapping[str, float]]],
                    out_dir: Path) -> dict[str, Path]:
        """Add fully evaluated candidates (model -> task -> item -> score) to every task's
        bank, refit it warm-started (IRT recalibration), save it under ``out_dir/<task>``
        and re-prepare the estimators on the same anchors; task -> saved bank."""
        from irt import ResponseMatrix, recalibrate

        saved = {}
        for task, bank in self.banks.items():
            models = [m for m in evaluated if task in evaluated[m]]
            if not models:
                continue
            item_ids = list(bank.item_ids)
            scores = np.array([[evaluated[m][task].get(strip_task(task, i), np.nan)
                                for i in item_ids] for m in models], dtype=float)
            new = ResponseMatrix(scores, tuple(models), tuple(item_ids), tuple(bank.item_tasks))
            bank = recalibrate(bank, new)
            self._use_bank(task, bank)
            saved[task] = _save_whole(bank, out_dir / task)
        return saved


def _save_whole(bank: object, directory: Path) -> Path:
    """Save ``bank`` to ``directory`` so that a kill leaves the old bank or the new one,
    never a mix: written beside it, then swapped in by renames."""
    import shutil

    from irt import save_bank

    partial = directory.with_name(f".{directory.name}.partial")
    old = directory.with_name(f".{directory.name}.old")
    for stale in (partial, old):
        shutil.rmtree(stale, ignore_errors=True)
    save_bank(bank, partial)
    if directory.exists():
        directory.rename(old)
    partial.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def full_accuracy(responses: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Plain accuracy per task from a full evaluation."""
    return {task: float(np.mean(list(answers.values()))) for task, answers in responses.items()}

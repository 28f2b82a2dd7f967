"""The generation loop: ask a generation from the study, evaluate it on the workers, tell
each result as it arrives, then do the generation's boundary work.

Everything a finished candidate produced is written to its Optuna trial (recipe,
estimates, standard errors, worker, timings; the sampler adds generation and parents)
before the next one is handed out, so ``kill -9`` loses only the candidates in flight.
A close call (dominated, but within ``fitness.rescore_margin`` standard errors of the
front) answers more items on the same worker before it is told. With ``fitness.adaptive``
a candidate answers the shared core first, then the top-up batches its own answers call
for (search/fitness.py), each a follow-up job on the same worker, which keeps the
candidate's weights; a close call's extra items are one more such top-up.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from search import records as keys  # the trial's user-attribute names
from search.config import SearchConfig
from search.faults import kill_point
from search.fronts import log_front
from search.full_eval import evaluate_front_fully
from search.pareto import close_call
from search.prepare import SearchInputs
from search.records import TrialRecord, finished_records, front_of, stored_trial
from search.rundir import RunState
from search.strategy import study_values
from search.tracking import Tracker
from search.workers import CandidateResult, WorkerPool

if TYPE_CHECKING:
    import optuna

__all__ = ["SearchLoop", "combine"]

log = logging.getLogger("merge3.search")

Job = tuple[int, dict[str, Any], dict[str, Any]]  # (trial number, recipe, task -> item ids)
# adaptive fitness: task -> the item ids a candidate answered, in the order asked (the
# core first), so that pairing on the shared core can be checked from the study
ITEMS_ASKED = "items_asked"


def combine(first: CandidateResult, more: CandidateResult) -> CandidateResult:
    """A close call's anchor answers plus its extra items; if the extra items failed, the
    anchors alone (the candidate keeps its first-pass score)."""
    if more.error:
        log.warning("re-scoring trial %s failed (%s); its anchor estimate stands",
                    first.key, more.error)
        return replace(first, failures=first.failures + more.failures)
    responses = {t: {**first.responses.get(t, {}), **more.responses.get(t, {})}
                 for t in set(first.responses) | set(more.responses)}
    return replace(first, responses=responses, seconds=first.seconds + more.seconds,
                   attempts=max(first.attempts, more.attempts))


class SearchLoop:
    """Runs a search's generations until ``population × generations`` candidates are
    finished (failed ones count), resuming where the study stands."""

    def __init__(self, config: SearchConfig, inputs: SearchInputs, study: optuna.Study,
                 pool: WorkerPool, tracker: Tracker, run_dir: Path, state: RunState, *,
                 progress: bool = True) -> None:
        self.config, self.inputs, self.study = config, inputs, study
        self.pool, self.tracker, self.run_dir, self.state = pool, tracker, run_dir, state
        self.objectives = inputs.objectives
        self.multi = len(study.directions) > 1  # NSGA-II on one objective per task
        # what the study is told for the task estimates: themselves (multi), else the
        # sampler's one value of them (the mean; `scalar`: the mean normalised accuracy)
        self.study_values = study_values(config.strategy.sampler, inputs, multi=self.multi)
        self.population = config.strategy.population
        self.budget = self.population * config.strategy.generations
        self.records: list[TrialRecord] = finished_records(study, self.objectives)
        self.item_evaluations = 0  # this session's
        self._trials: dict[int, optuna.Trial] = {}  # asked, not yet told
        self._recipes: dict[int, dict[str, Any]] = {}
        # candidates awaiting more items (adaptive top-ups, a close call's re-scoring)
        self._first_pass: dict[int, CandidateResult] = {}
        self._rescoring: set[int] = set()  # close calls sent for more items
        self._generation = 0
        self._bar = tqdm(total=self.budget, initial=len(self.records), desc="search",
                         unit="cand", disable=not progress)

    # -- the whole search ---------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        """Finish the budget; every finished record (by trial number)."""
        try:
            finished = len(self.records)
            reached = finished // self.population
            if finished % self.population == 0 and reached > self.state.data.get(
                    "generations_done", 0):
                # killed at a generation boundary: do what that boundary does
                self.finish_generation(reached - 1)
            while len(self.records) < self.budget:
                # a generation cut short by a kill is completed first: fronts stay per
                # generation
                generation = len(self.records) // self.population
                count = min(self.population * (generation + 1), self.budget) - len(self.records)
                self.pool.run(self.ask(generation, count), self.on_result)
                kill_point("generation")
                self.finish_generation(generation)
        finally:
            self._bar.close()
        return finished_records(self.study, self.objectives)

    # -- ask ----------------------------------------------------------------------------------
    def ask(self, generation: int, count: int) -> list[Job]:
        """``count`` new trials of ``generation``, decoded into evaluation jobs."""
        from optuna.trial import TrialState

        items = self.inputs.fitness.items_for_candidate()
        asked = []
        for _ in range(count):
            trial = self.study.ask()
            values = {g.name: trial.suggest_float(g.name, g.low, g.high, log=g.log)
                      for g in self.inputs.genome.genes}
            recipe = self.inputs.genome.decode(values)
            trial.set_user_attr(keys.RECIPE, recipe)
            self._trials[trial.number] = trial
            self._recipes[trial.number] = recipe
            asked.append(trial.number)
        # NSGA-II/GA samplers record their own place (generation, slot; in the storage,
        # which a live trial does not see); others get the batch's generation
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        recorded = {t.number for t in running if keys.GENERATION in t.user_attrs}
        for number in asked:
            if number not in recorded:
                self._trials[number].set_user_attr(keys.GENERATION, generation)
        self._generation = generation
        kill_point("ask")
        return [(number, self._recipes[number], items) for number in asked]

    # -- evaluate -----------------------------------------------------------------------------
    def on_result(self, result: CandidateResult) -> list[Job] | None:
        """Take one result from the pool: tell it, or ask for more items first — the next
        adaptive top-up batch, or a close call's re-scoring items (once)."""
        kill_point("evaluate")
        key = result.key
        fitness = self.inputs.fitness
        earlier = self._first_pass.pop(key, None)
        follow_up_failed = earlier is not None and bool(result.error)
        if earlier is not None:  # more items came back (or failed: the earlier ones stand)
            result = combine(earlier, result)
        if not result.error and not follow_up_failed:
            more = fitness.next_items(result.responses) if key not in self._rescoring else {}
            if not more and key not in self._rescoring and self.is_close_call(result):
                self._rescoring.add(key)
                more = fitness.rescore_items_for(result.responses)
            if more:
                self._first_pass[key] = result
                return [(key, self._recipes[key], more)]
        rescored = key in self._rescoring
        self._rescoring.discard(key)
        self.tell(result, rescored=rescored)
        return None

    def is_close_call(self, result: CandidateResult) -> bool:
        """Whether a first-pass result is dominated but within the margin of the front of
        the generations before its own."""
        fitness = self.inputs.fitness
        if not fitness.can_rescore:
            return False
        # against the front of the earlier generations only: which results of this one came
        # back first depends on timing (and on where a kill came), and must not decide
        earlier = [r for r in self.records
                   if r.generation is not None and r.generation < self._generation]
        front = front_of(earlier, self.objectives)
        if not front:
            return False
        scores = fitness.score(result.responses)
        margin = self.config.fitness.rescore_margin
        if self.multi:
            return close_call([scores[t].estimate for t in self.objectives],
                              [scores[t].stderr for t in self.objectives],
                              np.array([[r.estimates[t] for t in self.objectives]
                                        for r in front]), margin)
        mean = float(np.mean([scores[t].estimate for t in self.objectives]))
        stderr = float(np.sqrt(np.sum([scores[t].stderr ** 2 for t in self.objectives]))
                       ) / len(self.objectives)
        best = max(r.mean_estimate for r in front if r.mean_estimate is not None)
        return close_call([mean], [stderr], np.array([[best]]), margin)

    # -- tell ---------------------------------------------------------------------------------
    def tell(self, result: CandidateResult, *, rescored: bool = False) -> TrialRecord:
        """Write ``result`` to its trial, tell the study, log the candidate to MLflow."""
        from optuna.trial import TrialState

        trial = self._trials.pop(result.key)
        self._recipes.pop(result.key, None)
        trial.set_user_attr(keys.WORKER, result.worker)
        trial.set_user_attr(keys.ATTEMPTS, result.attempts)
        trial.set_user_attr(keys.WALL_SECONDS, result.seconds)
        if result.failures:
            trial.set_user_attr(keys.FAILURES, result.failures)
        if result.error:
            trial.set_user_attr(keys.ERROR, result.error)
            self.study.tell(trial, state=TrialState.FAIL)
            state = TrialState.FAIL
        else:
            scores = self.inputs.fitness.score(result.responses, extended=rescored)
            if rescored:
                trial.set_user_attr(keys.RESCORED, True)
            estimates = {t: s.estimate for t, s in scores.items()}
            trial.set_user_attr(keys.ESTIMATES, estimates)
            trial.set_user_attr(keys.STDERR, {t: s.stderr for t, s in scores.items()})
            trial.set_user_attr(keys.ITEMS_EVALUATED, result.items_evaluated)
            if self.inputs.fitness.adaptive is not None:
                trial.set_user_attr(ITEMS_ASKED, {t: list(v) for t, v in
                                                  result.responses.items()})
            self.item_evaluations += result.items_evaluated
            values = [estimates[t] for t in self.objectives]
            self.study.tell(trial, self.study_values(values))
            state = TrialState.COMPLETE
        record = TrialRecord.from_trial(stored_trial(self.study, trial.number, (state,)),
                                        self.objectives)
        self.records.append(record)
        self.tracker.log_candidate(record)
        self._bar.update(1)
        front = front_of(self.records, self.objectives)
        if front:
            best = max(r.mean_estimate for r in front if r.mean_estimate is not None)
            self._bar.set_postfix(gen=self._generation, front=len(front),
                                  best_mean=f"{best:.3f}")
        return record

    # -- the generation's boundary ------------------------------------------------------------
    def finish_generation(self, generation: int) -> None:
        """Log the generation's front, score it fully when due; note it in the state."""
        records = finished_records(self.study, self.objectives)
        log_front(records, self.objectives, self.tracker, self.run_dir, generation)
        every = self.config.fitness.full_every
        if every and (generation + 1) % every == 0:
            self.item_evaluations += evaluate_front_fully(
                front_of(records, self.objectives), self.pool, self.inputs.fitness,
                self.tracker, self.run_dir, generation,
                recalibrate=(self.config.fitness.recalibrate
                             and self.config.fitness.estimator != "full"))
        self.state.data["generations_done"] = generation + 1
        self.state.save()

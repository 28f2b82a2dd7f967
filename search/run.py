"""``run_search``: one search from a config to its front, start to end or resumed.

The order of things (docs/dataflow.md draws it):

1. the run directory is locked (search/rundir.py) and checked: a new search needs an
   unused directory, ``--resume`` one holding the same search (the stored resolved
   config is compared with the given one);
2. the config is resolved and checked (search/prepare.py: models, tasks, genome, item
   banks and anchors, preflight) — bad input fails here and leaves nothing behind;
3. the study (search/strategy.py), MLflow (search/tracking.py) and the Ray workers
   (search/workers.py) are opened; a resumed study's interrupted trials are marked FAIL
   and MLflow is caught up from the study;
4. the generation loop (search/loop.py) runs until population × generations candidates
   are finished;
5. the lineage of the front is drawn (search/lineage.py) and the search run closed. A
   search whose every candidate failed raises :class:`SearchFailedError` (exit 2).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from merge3.errors import Merge3Error
from search.config import SearchConfig
from search.lineage import plot_lineage
from search.loop import SearchLoop
from search.plan import check_plan
from search.portable import portable_text
from search.prepare import SearchInputs, prepare
from search.records import TrialRecord, finished_records, front_of
from search.rundir import STATE_FILE, RunDirLock, RunState, check_resume
from search.strategy import fail_interrupted, make_sampler, objective_count, open_study
from search.tracking import Tracker
from search.workers import WorkerPool, WorkerSpec, default_worker_count, init_ray

__all__ = ["run_search", "SearchOutcome", "SearchFailedError", "STATE_FILE"]

log = logging.getLogger("merge3.search")


class SearchFailedError(Merge3Error):
    """Every candidate of a search failed: there is no front."""


@dataclass(frozen=True)
class SearchOutcome:
    run_dir: Path
    evaluated: int  # finished candidates (COMPLETE)
    failed: int  # candidates that failed every attempt
    front: list[TrialRecord]
    tracking_uri: str
    experiment: str
    parent_run_id: str | None
    item_evaluations: int  # this session's
    experiment_id: str | None = None  # MLflow's id of ``experiment``


def run_search(
    config: SearchConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    address: str | None = None,
    progress: bool = True,
    config_text: str | None = None,
    plan_check: bool = True,
) -> SearchOutcome:
    """Run (or, with ``resume``, continue) the search ``config`` in ``run_dir``;
    ``config_text``: the YAML it came from, kept as ``run_dir/config.yaml``; ``plan_check``:
    refuse workers that `merge3 plan` says cannot fit this machine."""
    run_dir = Path(run_dir)
    lock = RunDirLock(run_dir)
    try:
        if run_dir.exists():
            lock.acquire()  # a directory in use is refused before any work
        RunState(run_dir).check_start(resume)
        inputs = prepare(config)
        if plan_check:  # workers that cannot fit are refused before anything starts
            check_plan(config, inputs.evaluated_model, local=address is None
                       and config.workers.address is None)
        resolved = config.model_dump(mode="json")
        if resume:
            _check_resume(RunState(run_dir), resolved, run_dir)
            # a search that recalibrated its banks goes on from them
            adopted = inputs.fitness.adopt_banks(run_dir / "banks")
            if adopted:
                log.info("resumed from the recalibrated item banks of %s", ", ".join(adopted))
        # everything is checked before the run directory is created: bad input leaves nothing
        run_dir.mkdir(parents=True, exist_ok=True)
        if not lock.held:
            lock.acquire()
            RunState(run_dir).check_start(resume)  # another search may have started meanwhile
        state = RunState(run_dir)
        state.data["config"] = resolved
        if config_text is not None and not (run_dir / "config.yaml").exists():
            (run_dir / "config.yaml").write_text(config_text)
        return _search(config, inputs, run_dir, state, resume=resume, address=address,
                       progress=progress)
    finally:
        lock.release()


def _check_resume(state: RunState, resolved: dict, run_dir: Path) -> None:
    stored = state.data.get("config")
    if stored is None:  # a run directory from before configs were stored
        log.warning("%s does not record the config it started with; resuming unchecked",
                    run_dir)
        return
    # keys added to the schema since the run started compare as their defaults (a stored
    # key the schema no longer has fails validation: then compare as stored)
    with contextlib.suppress(ValueError):
        stored = SearchConfig.model_validate(stored).model_dump(mode="json")
    changes = check_resume(stored, resolved, run_dir)
    if changes:
        log.warning("resumed with changed %s (allowed: they do not change what is searched)",
                    ", ".join(changes))


def _search(config: SearchConfig, inputs: SearchInputs, run_dir: Path, state: RunState, *,
            resume: bool, address: str | None, progress: bool) -> SearchOutcome:
    objectives, strategy = inputs.objectives, config.strategy
    multi = objective_count(strategy.sampler, len(objectives)) > 1
    sampler = make_sampler(strategy.sampler, population=strategy.population,
                           seed=strategy.seed, crossover_prob=strategy.crossover_prob,
                           mutation_prob=strategy.mutation_prob)
    storage = strategy.storage or f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
    study = open_study(name=config.name, storage=storage, sampler=sampler,
                       objectives=len(objectives) if multi else 1)
    tracking_uri = config.tracking.uri or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
    experiment = config.tracking.experiment or config.name
    tracker = _start_tracking(config, inputs, run_dir, state, tracking_uri, experiment,
                              resume=resume)
    if resume:
        _catch_up(study, storage, objectives, tracker)

    started_ray = init_ray(address or config.workers.address)
    pool = None
    try:
        pool = _worker_pool(config, inputs)
        loop = SearchLoop(config, inputs, study, pool, tracker, run_dir, state,
                          progress=progress)
        records = loop.run()
        front = front_of(records, objectives)
        if front:
            for path in plot_lineage(records, front, run_dir / "fronts"):
                tracker.log_artifact(path, "fronts")
        failure = None if front else _all_failed(records)
        tracker.finish("FAILED" if failure else "FINISHED")
        tracker.close(wait=config.tracking.flush_timeout)
    finally:
        if pool is not None:
            pool.shutdown()
        if started_ray:
            import ray

            ray.shutdown()
    if failure is not None:
        raise failure
    failed = sum(1 for r in records if not r.complete)
    return SearchOutcome(run_dir, len(records) - failed, failed, front, tracking_uri,
                         experiment, state.data.get("parent_run_id"), loop.item_evaluations,
                         tracker.experiment_id)


def _start_tracking(config: SearchConfig, inputs: SearchInputs, run_dir: Path,
                    state: RunState, uri: str, experiment: str, *, resume: bool) -> Tracker:
    """The search's MLflow run (reopened on resume) with the config and the anchors."""
    strategy = config.strategy
    tracker = Tracker(uri, experiment, run_dir)
    parent = tracker.start(
        config.name,
        params={"method": config.method, "sampler": strategy.sampler,
                "population": strategy.population, "generations": strategy.generations,
                "estimator": config.fitness.estimator, "anchors": config.fitness.anchors,
                "objectives": ",".join(inputs.objectives), "genes": len(inputs.genome.genes)},
        tags={"merge3.run_dir": run_dir.name},
        resume_run_id=state.data.get("parent_run_id"),
    )
    if parent:
        state.data["parent_run_id"] = parent
    state.data.setdefault("study", config.name)
    state.save()
    if not resume and (run_dir / "config.yaml").exists():
        portable = run_dir / "artifacts" / "config.yaml"
        portable.parent.mkdir(exist_ok=True)
        portable.write_text(portable_text((run_dir / "config.yaml").read_text()))
        tracker.log_artifact(portable)
    for task, anchor_set in inputs.fitness.anchor_sets.items():
        path = run_dir / "anchors" / f"{task}.json"
        path.parent.mkdir(exist_ok=True)
        anchor_set.save(path)
        tracker.log_artifact(path, "anchors")
    return tracker


def _catch_up(study, storage: str, objectives: list[str], tracker: Tracker) -> None:
    """After a kill: trials in flight are marked FAIL (their slots are asked again), MLflow
    logs what the study holds and it does not, and runs the kill left RUNNING are closed."""
    interrupted = fail_interrupted(study, storage)
    if interrupted:
        log.warning("resumed: %d candidates in flight at the kill were marked FAIL: %s",
                    len(interrupted), interrupted)
    for record in finished_records(study, objectives):
        tracker.log_candidate(record)  # idempotent; completes runs a kill cut short
    orphans = tracker.reconcile()
    if orphans:
        log.warning("resumed: MLflow runs of trials %s were left RUNNING by the kill and are "
                    "marked KILLED (their trials are not finished in the study)", orphans)


def _worker_pool(config: SearchConfig, inputs: SearchInputs) -> WorkerPool:
    workers = config.workers
    gpus = workers.gpus
    if gpus is None:
        import torch

        gpus = 1.0 if torch.cuda.is_available() else 0.0
    spec = WorkerSpec(inputs.evaluated_model, inputs.experts, inputs.tasks,
                      evaluation=config.evaluation, threads=max(1, int(workers.cpus)),
                      fault=workers.fault, expert_storage=config.expert_storage)
    return WorkerPool(spec, count=workers.count or default_worker_count(gpus, workers.cpus),
                      cpus=workers.cpus, gpus=gpus, timeout=workers.timeout,
                      retries=workers.retries)


def _all_failed(records: list[TrialRecord]) -> SearchFailedError:
    first = next((r for r in records if r.error), None)
    cause = f"trial {first.number}: {first.error}" if first else "no candidate finished"
    return SearchFailedError(
        f"Every candidate of the search failed ({len(records)} of {len(records)}); the "
        f"first cause: {cause}.",
        fix="fix that cause (see the trials' errors in MLflow or `merge3 pareto`), then "
            "start the search again in a new run directory.")

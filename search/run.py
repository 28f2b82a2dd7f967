"""The search driver: ask a generation, evaluate it on Ray workers, tell, log, repeat.

Everything a finished candidate produced is written to its Optuna trial (genome,
recipe, estimates, standard errors, parents, worker, timings) before the next one is
handed out, so ``kill -9`` loses only the candidates in flight; ``--resume`` marks
those FAIL, catches MLflow up from the study and carries on until the budget
(population × generations finished candidates) is spent.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from merge3.errors import RecipeError
from merge3.genome import Genome
from merge3.models import resolve_model
from merge3.remote_code import check_remote_code
from search.config import SearchConfig
from search.faults import kill_point
from search.fitness import Fitness, full_accuracy, recalibrate_banks
from search.pareto import close_call, front_table, hypervolume, pareto_mask, plot_front
from search.strategy import GENERATION, PARENTS, fail_interrupted, make_sampler, open_study
from search.tracking import Tracker, redact_credentials
from search.workers import CandidateResult, WorkerPool, WorkerSpec, init_ray

__all__ = ["run_search", "SearchOutcome", "finished_records", "STATE_FILE"]

log = logging.getLogger("merge3.search")
STATE_FILE = "search_state.json"


@dataclass
class SearchOutcome:
    run_dir: Path
    evaluated: int
    failed: int
    front: list[dict[str, Any]]
    tracking_uri: str
    experiment: str
    parent_run_id: str | None
    item_evaluations: int


def _resolve_task(reference: str) -> str:
    if reference.startswith("zoo:"):
        from merge3 import zoo

        return str(zoo.resolve(reference[4:]))
    if not Path(reference).exists():
        raise RecipeError(f"Task file {reference!r} does not exist.",
                          fix="point `tasks:` at task YAML files (see docs/formats.md).")
    return reference


def trial_record(trial, objectives: list[str]) -> dict[str, Any]:
    """What MLflow and the front need from a finished trial."""
    attrs = trial.user_attrs
    values = attrs.get("estimates", {})
    return {
        "trial": trial.number,
        "state": trial.state.name,
        "generation": attrs.get(GENERATION, ""),
        "parents": attrs.get(PARENTS, []),
        "genome": dict(trial.params),
        "values": values,
        "stderr": attrs.get("stderr", {}),
        "items_evaluated": attrs.get("items_evaluated"),
        "wall_seconds": attrs.get("wall_seconds"),
        "mean_estimate": float(np.mean([values[t] for t in objectives])) if values else None,
        "worker": attrs.get("worker", ""),
        "failures": attrs.get("failures", []),
        "error": attrs.get("error"),
        "recipe": attrs.get("recipe"),
        "rescored": bool(attrs.get("rescored")),
    }


def finished_records(study, objectives: list[str]) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    return [trial_record(t, objectives) for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.FAIL)
            and not t.user_attrs.get("interrupted")]


def front_of(records: list[dict[str, Any]], objectives: list[str]) -> list[dict[str, Any]]:
    done = [r for r in records if r["state"] == "COMPLETE"]
    if not done:
        return []
    values = np.array([[r["values"][t] for t in objectives] for r in done])
    return [r for r, keep in zip(done, pareto_mask(values)) if keep]


_ABSOLUTE = re.compile(r"(?<![\w:/.…])(/[^\s'\",:]+)")


def portable_text(text: str) -> str:
    """``text`` with absolute paths made relative to the working directory, or reduced to
    ``…/<name>`` outside it, and URL passwords replaced by ``***``: artifacts shared
    through MLflow carry no machine paths and no credentials."""
    text = redact_credentials(text)
    cwd = Path.cwd().resolve()

    def shorten(match: re.Match[str]) -> str:
        path = Path(match.group(1))
        try:
            return str(path.resolve().relative_to(cwd))
        except ValueError:
            return f"…/{path.name}"

    text = re.sub(r"(sqlite:///)(/[^\s'\",]+)",
                  lambda m: m.group(1) + shorten(re.match(r"(.*)", m.group(2))), text)
    return _ABSOLUTE.sub(shorten, text)


class _State:
    """The run directory's small JSON state (the MLflow parent run id)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / STATE_FILE
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)


def run_search(
    config: SearchConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    address: str | None = None,
    progress: bool = True,
    config_text: str | None = None,
) -> SearchOutcome:
    run_dir = Path(run_dir)
    state = _State(run_dir) if run_dir.exists() else None
    if state and state.data and not resume:
        raise RecipeError(f"{run_dir} already holds a search.",
                          fix="pass --resume to continue it, or choose another run directory.")
    if resume and not (state and state.data):
        raise RecipeError(f"{run_dir} holds no search to resume.",
                          fix="start it without --resume.")
    objectives = config.objective_tasks
    base_model = str(resolve_model(config.base_model)) if config.base_model else None
    experts = {name: str(resolve_model(ref)) for name, ref in config.experts.items()}
    tasks = {name: _resolve_task(ref) for name, ref in config.tasks.items()
             if name in objectives}
    genome = Genome(config.method, experts, config.genome, base_model=base_model,
                    fixed=config.fixed, dtype=config.dtype)
    fitness = Fitness(objectives, config.fitness.estimator, config.fitness.item_bank,
                      config.fitness.anchors, config.fitness.anchor_method,
                      config.fitness.seed, experts=experts,
                      rescore_items=(config.fitness.rescore_items
                                     if config.fitness.estimator != "full" else 0))
    evaluated_model = base_model or experts[next(iter(experts))]
    if config.evaluation.backend in ("hf", "vllm"):
        check_remote_code(evaluated_model, config.evaluation.trust_remote_code)
    # everything is checked before the run directory is created: bad input leaves nothing
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _State(run_dir)
    if config_text is not None and not (run_dir / "config.yaml").exists():
        (run_dir / "config.yaml").write_text(config_text)
    strategy = config.strategy
    multi = strategy.sampler == "nsga2" and len(objectives) > 1
    sampler = make_sampler(strategy.sampler, population=strategy.population,
                           seed=strategy.seed, crossover_prob=strategy.crossover_prob,
                           mutation_prob=strategy.mutation_prob)
    storage = strategy.storage or f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
    study = open_study(name=config.name, storage=storage, sampler=sampler,
                       objectives=len(objectives) if multi else 1)

    tracking_uri = config.tracking.uri or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
    experiment = config.tracking.experiment or config.name
    tracker = Tracker(tracking_uri, experiment, run_dir)
    parent = tracker.start(
        config.name,
        params={"method": config.method, "sampler": strategy.sampler,
                "population": strategy.population, "generations": strategy.generations,
                "estimator": config.fitness.estimator, "anchors": config.fitness.anchors,
                "objectives": ",".join(objectives), "genes": len(genome.genes)},
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
    for task, anchor_set in fitness.anchor_sets.items():
        path = run_dir / "anchors" / f"{task}.json"
        path.parent.mkdir(exist_ok=True)
        anchor_set.save(path)
        tracker.log_artifact(path, "anchors")

    interrupted = fail_interrupted(study) if resume else []
    if interrupted:
        log.warning("resumed: %d candidates in flight at the kill were marked FAIL: %s",
                    len(interrupted), interrupted)
    for record in finished_records(study, objectives):
        tracker.log_candidate(record)  # idempotent catch-up; completes runs a kill cut short
    orphans = tracker.reconcile()
    if orphans:
        log.warning("resumed: MLflow runs of trials %s were left RUNNING by the kill and are "
                    "marked KILLED (their trials are not finished in the study)", orphans)

    budget = strategy.population * strategy.generations
    started_ray = init_ray(address or config.workers.address)
    gpus = config.workers.gpus
    if gpus is None:
        import torch

        gpus = 1.0 if torch.cuda.is_available() else 0.0
    count = config.workers.count or _default_workers(gpus, config.workers.cpus)
    spec = WorkerSpec(evaluated_model, experts, tasks,
                      backend=config.evaluation.backend, device=config.evaluation.device,
                      dtype=config.evaluation.dtype, batch_size=config.evaluation.batch_size,
                      threads=max(1, int(config.workers.cpus)), fault=config.workers.fault,
                      trust_remote_code=config.evaluation.trust_remote_code)
    pool = WorkerPool(spec, count=count, cpus=config.workers.cpus, gpus=gpus,
                      timeout=config.workers.timeout, retries=config.workers.retries)
    items = fitness.items_for_candidate()
    finished = len(finished_records(study, objectives))

    def finish_generation(generation: int) -> int:
        """Log the generation's front, score it fully when due; note it in the state."""
        _log_generation(study, objectives, tracker, run_dir, generation)
        count = 0
        every = config.fitness.full_every
        if every and (generation + 1) % every == 0:
            count = _evaluate_front_fully(
                study, objectives, pool, fitness, tracker, run_dir, generation,
                recalibrate=config.fitness.recalibrate and config.fitness.estimator != "full")
        state.data["generations_done"] = generation + 1
        state.save()
        return count

    bar = tqdm(total=budget, initial=finished, desc="search", unit="cand", disable=not progress)
    item_evaluations = 0
    try:
        reached = finished // strategy.population
        if finished % strategy.population == 0 and reached > state.data.get(
                "generations_done", 0):
            # killed at a generation boundary: do what that boundary does
            item_evaluations += finish_generation(reached - 1)
        while finished < budget:
            # a generation cut short by a kill is completed first: fronts stay per generation
            generation = finished // strategy.population
            batch = min(strategy.population * (generation + 1), budget) - finished
            trials, jobs = [], []
            for _ in range(batch):
                trial = study.ask()
                values = {g.name: trial.suggest_float(g.name, g.low, g.high, log=g.log)
                          for g in genome.genes}
                recipe = genome.decode(values)
                trial.set_user_attr("recipe", recipe)
                # NSGA-II/GA samplers record their own generation; others get the batch's
                if GENERATION not in study._storage.get_trial(trial._trial_id).user_attrs:
                    trial.set_user_attr(GENERATION, generation)
                trials.append(trial)
                jobs.append((trial.number, recipe, items))
            kill_point("ask")
            by_number = {t.number: t for t in trials}
            recipes = {job[0]: job[1] for job in jobs}
            first_pass: dict[int, CandidateResult] = {}  # close calls awaiting more items

            def on_result(result: CandidateResult, by_number=by_number, recipes=recipes,
                          first_pass=first_pass, generation=generation) -> list | None:
                nonlocal finished, item_evaluations
                kill_point("evaluate")
                trial = by_number[result.key]
                earlier = first_pass.pop(result.key, None)
                if earlier is not None:  # the close call's extra items came back (or failed)
                    result = _combine(earlier, result)
                elif not result.error and _is_close_call(fitness, result, study, objectives,
                                                         multi, config.fitness.rescore_margin):
                    first_pass[result.key] = result
                    return [(result.key, recipes[result.key], fitness.rescore_items_for())]
                trial.set_user_attr("worker", result.worker)
                trial.set_user_attr("attempts", result.attempts)
                trial.set_user_attr("wall_seconds", result.seconds)
                if result.failures:
                    trial.set_user_attr("failures", result.failures)
                if result.error:
                    trial.set_user_attr("error", result.error)
                    study.tell(trial, state=_fail())
                else:
                    scores = fitness.score(result.responses, extended=earlier is not None)
                    if earlier is not None:
                        trial.set_user_attr("rescored", True)
                    estimates = {t: s.estimate for t, s in scores.items()}
                    trial.set_user_attr("estimates", estimates)
                    trial.set_user_attr("stderr", {t: s.stderr for t, s in scores.items()})
                    trial.set_user_attr("items_evaluated", result.items_evaluated)
                    item_evaluations += result.items_evaluated
                    values = ([estimates[t] for t in objectives] if multi
                              else float(np.mean([estimates[t] for t in objectives])))
                    study.tell(trial, values)
                finished += 1
                frozen = study._storage.get_trial(trial._trial_id)
                tracker.log_candidate(trial_record(frozen, objectives))
                bar.update(1)
                front = front_of(finished_records(study, objectives), objectives)
                if front:
                    best = max(r["mean_estimate"] for r in front)
                    bar.set_postfix(gen=generation, front=len(front), best_mean=f"{best:.3f}")

            pool.run(jobs, on_result)
            kill_point("generation")
            item_evaluations += finish_generation(generation)
        records = finished_records(study, objectives)
        front = front_of(records, objectives)
        _log_lineage(records, front, tracker, run_dir)
        tracker.finish()
        tracker.close(wait=config.tracking.flush_timeout)
    finally:
        bar.close()
        pool.shutdown()
        if started_ray:
            import ray

            ray.shutdown()
    failed = sum(1 for r in records if r["state"] == "FAIL")
    return SearchOutcome(run_dir, len(records) - failed, failed, front, tracking_uri,
                         experiment, state.data.get("parent_run_id"), item_evaluations)


def _evaluate_front_fully(study, objectives: list[str], pool: WorkerPool, fitness: Fitness,
                          tracker: Tracker, run_dir: Path, generation: int, *,
                          recalibrate: bool) -> int:
    """Score the current front on every item: true accuracies beside the estimates
    (``full_evals.jsonl`` and ``full/<task>`` metrics), and the item banks recalibrated
    with those responses so they follow models stronger than their population."""
    log_path = run_dir / "full_evals.jsonl"
    done = set()
    if log_path.exists():
        done = {json.loads(line)["trial"] for line in log_path.read_text().splitlines() if line}
    front = [r for r in front_of(finished_records(study, objectives), objectives)
             if r["trial"] not in done]
    if not front:
        return 0
    evaluated: dict[str, dict[str, dict[str, float]]] = {}
    count = 0

    def on_result(result: CandidateResult) -> None:
        nonlocal count
        if result.error:
            log.warning("full evaluation of trial %s failed: %s", result.key, result.error)
            return
        count += result.items_evaluated
        record = {"trial": result.key, "generation": generation,
                  "accuracy": full_accuracy(result.responses)}
        with log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        evaluated[f"trial-{result.key}"] = result.responses
        run_id = tracker.run_id(result.key)
        if run_id:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            tracker._call(lambda: tracker.client.log_batch(run_id, metrics=[
                Metric(f"full/{t}", v, now, 0) for t, v in record["accuracy"].items()]))

    full_items = dict.fromkeys(objectives)
    pool.run([(r["trial"], r["recipe"], full_items) for r in front], on_result)
    tracker.log_artifact(log_path)
    if recalibrate and evaluated:
        for task, path in recalibrate_banks(fitness, evaluated, run_dir / "banks").items():
            tracker.log_artifact(path, f"item_banks/gen{generation:03d}/{task}")
    return count


def _is_close_call(fitness: Fitness, result: CandidateResult, study, objectives: list[str],
                   multi: bool, margin: float) -> bool:
    """Whether a first-pass result is dominated but within ``margin`` standard errors of
    the current front (then it is re-scored on more items before it is told)."""
    if not fitness.extra_items:
        return False
    scores = fitness.score(result.responses)
    front = front_of(finished_records(study, objectives), objectives)
    if not front:
        return False
    if multi:
        return close_call([scores[t].estimate for t in objectives],
                          [scores[t].stderr for t in objectives],
                          np.array([[r["values"][t] for t in objectives] for r in front]),
                          margin)
    mean = float(np.mean([scores[t].estimate for t in objectives]))
    stderr = float(np.sqrt(np.sum([scores[t].stderr ** 2 for t in objectives]))) / len(objectives)
    return close_call([mean], [stderr], np.array([[max(r["mean_estimate"] for r in front)]]),
                      margin)


def _combine(first: CandidateResult, more: CandidateResult) -> CandidateResult:
    """A close call's anchor answers plus its extra items; if the extra items failed, the
    anchors alone (the candidate keeps its first-pass score)."""
    from dataclasses import replace

    if more.error:
        log.warning("re-scoring trial %s failed (%s); its anchor estimate stands",
                    first.key, more.error)
        return replace(first, failures=first.failures + more.failures)
    responses = {t: {**first.responses.get(t, {}), **more.responses.get(t, {})}
                 for t in set(first.responses) | set(more.responses)}
    return replace(first, responses=responses, seconds=first.seconds + more.seconds,
                   attempts=max(first.attempts, more.attempts))


def _fail():
    from optuna.trial import TrialState

    return TrialState.FAIL


def _default_workers(gpus: float, cpus: float) -> int:
    if gpus:
        import torch

        return max(1, torch.cuda.device_count())
    return max(1, int((os.cpu_count() or 1) // max(cpus, 1)))


def _log_generation(study, objectives: list[str], tracker: Tracker, run_dir: Path,
                    generation: int) -> None:
    records = finished_records(study, objectives)
    front = front_of(records, objectives)
    if not front:
        return
    done = [r for r in records if r["state"] == "COMPLETE"]
    values = np.array([[r["values"][t] for t in objectives] for r in done])
    out = run_dir / "fronts"
    table = out / f"front_gen{generation:03d}.md"
    out.mkdir(exist_ok=True)
    table.write_text(front_table(front, objectives) + "\n")
    png = plot_front(values, objectives, out / f"front_gen{generation:03d}.png",
                     title=f"generation {generation}: {len(done)} candidates")
    tracker.log_artifact(table, "fronts")
    tracker.log_artifact(png, "fronts")
    tracker.log_metrics({"front_size": len(front), "hypervolume": hypervolume(values),
                         "best_mean_estimate": max(r["mean_estimate"] for r in front),
                         "candidates": len(done)}, step=generation)


def _log_lineage(records: list[dict[str, Any]], front: list[dict[str, Any]], tracker: Tracker,
                 run_dir: Path) -> None:
    """A PNG of the front members' ancestry (x: generation, arrows parent -> child)."""
    if not front:
        return
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    by_trial = {r["trial"]: r for r in records}
    keep: set[int] = set()
    stack = [r["trial"] for r in front]
    while stack:
        trial = stack.pop()
        if trial in keep or trial not in by_trial:
            continue
        keep.add(trial)
        stack.extend(by_trial[trial]["parents"] or [])
    rows: dict[int, list[int]] = {}
    for trial in sorted(keep):
        rows.setdefault(int(by_trial[trial]["generation"] or 0), []).append(trial)
    position = {t: (g, i) for g, members in rows.items() for i, t in enumerate(members)}
    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.subplots()
    front_ids = {r["trial"] for r in front}
    for trial, (x, y) in position.items():
        for parent in by_trial[trial]["parents"] or []:
            if parent in position:
                px, py = position[parent]
                ax.annotate("", (x, y), (px, py), arrowprops={"arrowstyle": "->", "lw": 0.6,
                                                               "color": "#888888"})
        ax.scatter([x], [y], s=60, c="#d62728" if trial in front_ids else "#1f77b4", zorder=3)
        ax.annotate(str(trial), (x, y), fontsize=7, ha="center", va="bottom",
                    xytext=(0, 5), textcoords="offset points")
    ax.set_xlabel("generation")
    ax.set_yticks([])
    ax.set_title("lineage of the Pareto front (red: front members)")
    fig.tight_layout()
    path = run_dir / "fronts" / "lineage.png"
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path)
    tracker.log_artifact(path, "fronts")
    (run_dir / "fronts" / "lineage.json").write_text(json.dumps(
        {str(t): by_trial[t]["parents"] for t in sorted(keep)}, indent=1))
    tracker.log_artifact(run_dir / "fronts" / "lineage.json", "fronts")

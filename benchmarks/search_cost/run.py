"""Search cost: the same search scored by full evaluation and by IRT on a few items.

The arms share everything but the fitness: the demo zoo's TSV-M genome (a weight per
expert and layer group, and α), NSGA-II with the same seed, population and generations,
the same workers. Arm ``full`` scores every test item of every objective task; arms
``EST@k`` score k static anchor items per task and estimate the rest with estimator EST;
arms ``EST@c..b`` are adaptive (fitness.adaptive): a shared core of c anchors, then top-ups
chosen by Fisher information at each candidate's ability until b items per task were asked
(no standard-error stop, so an adaptive arm costs what the static arm of b items costs).

Per arm: item evaluations and wall time of the search; its best member (the highest mean
of the search's *own* fitness values) and its Pareto front, then fully evaluated on the
test items for their true accuracy. Compared with the zoo's fixed-coefficient merges
(merge3.zoo.report's methods, coefficient chosen on validation), with 95% bootstrap
intervals: test items resampled within each task, the same draw for every model.

Usage (from the repo root, with a built demo zoo under $MERGE3_HOME):
    .venv/bin/python benchmarks/search_cost/run.py --work-dir DIR
    .venv/bin/python benchmarks/search_cost/run.py --report-only   # tables from the JSON
Writes results-seed<S>.json and results-seed<S>.md (the tables) next to this file, and
summary.md: the headline numbers of every seed's results in one table.
Each arm's search and the full evaluations are cached in DIR, so an interrupted run
continues where it stopped (an arm cut short mid-search is rerun from scratch: its wall
time must be one uninterrupted run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from search.records import TrialRecord

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
HERE = Path(__file__).resolve().parent

# The two tasks where every fixed-coefficient merge of the zoo report stays furthest from
# the experts (normalised accuracy 80-94%); on the other four the fixed merges already
# reach 96-101% of the experts, and a search has nothing left to find there.
DEFAULT_TASKS = ("word_order", "text_source")
# static anchors at 20 and 10 items per task, and adaptive tests of the same budgets
DEFAULT_ARMS = ("full", "mp-irt@20", "mp-irt@10", "mp-irt@10..20", "mp-irt@5..10")
FIXED_LABELS = ("averaging", "task arithmetic", "TIES", "TSV-M", "Iso-C", "Iso-CTS")


# -- machine and provenance --------------------------------------------------------------
def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    # other people's uncommitted edits in the work tree at the time of the run
    dirty = subprocess.run(["git", "diff", "--name-only", "HEAD"], cwd=REPO,
                           capture_output=True, text=True).stdout.split()
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "commit": commit, "uncommitted": dirty,
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


# -- the searches -----------------------------------------------------------------------
@dataclass(frozen=True)
class ArmSpec:
    """One arm: ``full``, ``EST@K`` (K static anchors per task) or ``EST@C..B`` (adaptive:
    a shared core of C anchors, then Fisher-information top-ups up to B items per task)."""

    name: str
    estimator: str
    anchors: int
    budget: int | None = None  # adaptive budget per task (core included); None: static

    @classmethod
    def parse(cls, text: str) -> ArmSpec:
        text = text.strip()
        if text == "full":
            return cls("full", "full", 1)
        estimator, sep, size = text.partition("@")
        core, dots, budget = size.partition("..")
        if not sep or not core.isdigit() or (dots and not budget.isdigit()):
            raise SystemExit(f"arm {text!r}: expected 'full', 'EST@K' (static) or "
                             "'EST@C..B' (adaptive, core C, budget B), e.g. mp-irt@5..10")
        if dots and int(budget) <= int(core):
            raise SystemExit(f"arm {text!r}: the budget must exceed the core")
        return cls(text, estimator, int(core), int(budget) if dots else None)

    @property
    def directory(self) -> str:
        return self.name.replace("@", "-k").replace("..", "-to-")


def arm_config(zoo_dir: Path, banks: Path, args: argparse.Namespace,
               arm: ArmSpec) -> dict[str, Any]:
    """The demo's search config (search.demo) with this arm's fitness and budget."""
    from search.demo import demo_search_config

    config = demo_search_config(zoo_dir, banks, size=args.zoo_size, population=args.population,
                                generations=args.generations, anchors=arm.anchors,
                                workers=args.workers, sampler=args.sampler)
    config["name"] = f"search-cost-{arm.directory}"
    config["objectives"] = list(args.tasks)
    config["fitness"] = {"estimator": arm.estimator, "item_bank": str(banks.resolve()),
                         "anchors": arm.anchors}
    if arm.budget is not None:  # the whole budget is spent: equal cost to EST@budget
        config["fitness"]["adaptive"] = {"core": arm.anchors, "budget": arm.budget,
                                         "batch": args.batch, "se_target": None}
    config["strategy"]["seed"] = args.seed
    return config


def _records(run_dir: Path, config: dict[str, Any]) -> list[TrialRecord]:
    from search.records import finished_records
    from search.strategy import make_sampler, open_study

    strategy = config["strategy"]
    study = open_study(name=config["name"], storage=f"sqlite:///{run_dir / 'optuna.db'}",
                       sampler=make_sampler(strategy["sampler"], population=strategy["population"],
                                            seed=strategy["seed"]),
                       objectives=len(config["objectives"]))
    return finished_records(study, config["objectives"])


def run_arm(name: str, config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """One search, timed; its summary is cached as ``run_dir/arm.json``."""
    import yaml

    from search.config import parse_config
    from search.records import front_of
    from search.run import run_search

    summary_path = run_dir / "arm.json"
    if summary_path.exists():
        print(f"[{name}] cached: {summary_path}", flush=True)
        return json.loads(summary_path.read_text())
    if run_dir.exists():  # cut short earlier: its wall time would be meaningless
        shutil.rmtree(run_dir)
    load_before, machine = _load(), _machine()
    print(f"[{name}] searching ({config['strategy']['population']} × "
          f"{config['strategy']['generations']}), load {load_before}", flush=True)
    start = time.perf_counter()
    outcome = run_search(parse_config(config), run_dir, progress=True,
                         config_text=yaml.safe_dump(config, sort_keys=False))
    wall = time.perf_counter() - start
    objectives = config["objectives"]
    records = _records(run_dir, config)
    done = [r for r in records if r.complete]
    front = front_of(records, objectives)
    best = max(done, key=lambda r: r.mean_estimate)  # by the search's own fitness
    summary = {
        "arm": name,
        "estimator": config["fitness"]["estimator"],
        "anchors": None if config["fitness"]["estimator"] == "full"
        else config["fitness"]["anchors"],
        "adaptive": config["fitness"].get("adaptive"),
        "wall_seconds": wall,
        "candidates": len(done),
        "failed": len(records) - len(done),
        "item_evaluations": outcome.item_evaluations,
        "items_per_candidate": outcome.item_evaluations / max(len(done), 1),
        "worker_seconds": float(sum(r.wall_seconds or 0.0 for r in done)),
        "load_before": load_before,
        "load_after": _load(),
        "machine": machine,
        "best_trial": best.number,
        "front_trials": [r.number for r in front],
        "members": {str(r.number): {"generation": r.generation, "parents": list(r.parents),
                                    "values": r.estimates, "stderr": r.stderr,
                                    "recipe": r.recipe}
                    for r in front},
    }
    summary_path.write_text(json.dumps(summary, indent=1))
    print(f"[{name}] {wall:.0f} s, {summary['item_evaluations']} item evaluations, "
          f"best trial {best.number} (mean fitness {best.mean_estimate:.4f})", flush=True)
    return summary


# -- full evaluation of the members -----------------------------------------------------
def evaluate_members(arms: dict[str, dict[str, Any]], config: dict[str, Any], work: Path,
                     workers: int) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Every front member of every arm scored on all test items of the objective tasks
    (cached per arm in ``work/full_responses/<arm>.json``)."""
    cache_dir = work / "full_responses"
    cache_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    jobs = []
    for name, arm in arms.items():
        path = cache_dir / f"{name}.json"
        out[name] = json.loads(path.read_text()) if path.exists() else {}
        jobs += [((name, trial), arm["members"][trial]["recipe"])
                 for trial in arm["members"] if trial not in out[name]]
    if not jobs:
        return out
    print(f"fully evaluating {len(jobs)} front members, load {_load()}", flush=True)
    objectives = config["objectives"]

    def keep(key, responses) -> None:
        name, trial = key
        out[name][trial] = responses
        (cache_dir / f"{name}.json").write_text(json.dumps(out[name]))

    _run_pool(jobs, config, {t: config["tasks"][t] for t in objectives}, workers, keep)
    return out


def _run_pool(jobs: list[tuple[Any, dict[str, Any]]], config: dict[str, Any],
              task_files: dict[str, str], workers: int, keep) -> None:
    """Score every ``(key, recipe)`` job on all items of ``task_files`` with the search's
    own Ray workers; ``keep(key, responses)`` gets each result."""
    from merge3.models import resolve_model
    from search.prepare import resolve_task
    from search.workers import CandidateResult, WorkerPool, WorkerSpec, init_ray

    base = str(resolve_model(config["base_model"]))
    experts = {k: str(resolve_model(v)) for k, v in config["experts"].items()}
    tasks = {t: resolve_task(path) for t, path in task_files.items()}
    started = init_ray(None, num_cpus=workers)
    pool = WorkerPool(WorkerSpec(base, experts, tasks, threads=1), count=workers, cpus=1)
    every_item = dict.fromkeys(tasks)

    def on_result(result: CandidateResult) -> None:
        if result.error:
            raise RuntimeError(f"full evaluation of {result.key} failed: {result.error}")
        keep(result.key, result.responses)
        print(f"  {result.key}: " + ", ".join(
            f"{t} {np.mean(list(v.values())):.3f}" for t, v in result.responses.items()),
            flush=True)

    try:
        pool.run([(key, recipe, every_item) for key, recipe in jobs], on_result)
    finally:
        pool.shutdown()
        if started:
            import ray

            ray.shutdown()


def verified_trials(arms: dict[str, dict[str, Any]], responses: dict[str, Any],
                    tasks: list[str]) -> dict[str, str]:
    """Per IRT arm, the front member with the best mean *true* accuracy: the best member
    when the search ends by evaluating its final front in full (DESIGN, step 7)."""
    out = {}
    for name, arm in arms.items():
        if arm["estimator"] == "full":
            continue
        out[name] = str(max(arm["front_trials"], key=lambda t: np.mean(
            [np.mean(list(responses[name][str(t)][task].values())) for task in tasks])))
    return out


def held_out(arms: dict[str, dict[str, Any]], config: dict[str, Any], zoo_dir: Path,
             work: Path, workers: int, verified: dict[str, str]
             ) -> dict[str, dict[str, dict[str, float]]]:
    """The searches' best members and the fixed merges (validation-chosen coefficients)
    on the *validation* items, which no search saw (cached in ``work/validation.json``).

    The fixed merges' recipes are the zoo's own (``recipes/<model>.yaml``; equal weights,
    so the experts' order does not matter)."""
    import yaml

    path = work / "validation.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    objectives = config["objectives"]
    jobs = [(f"best/{name}", arm["members"][str(arm["best_trial"])]["recipe"])
            for name, arm in arms.items()]
    jobs += [(f"verified/{name}", arms[name]["members"][trial]["recipe"])
             for name, trial in verified.items()]
    for label, entry in fixed_merges(zoo_dir, objectives).items():
        recipe = yaml.safe_load((zoo_dir / "recipes" / f"{entry['validation']['model']}.yaml")
                                .read_text())
        jobs.append((f"fixed/{label}", recipe))
    jobs = [(key, recipe) for key, recipe in jobs if key not in out]
    if not jobs:
        return out
    task_dir = work / "validation_tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    task_files = {}
    for task in objectives:
        source = Path(config["tasks"][task])
        spec = yaml.safe_load(source.read_text())
        spec["dataset"]["path"] = str((source.parent / spec["dataset"]["path"]).resolve())
        spec["dataset"]["split"] = "validation"
        task_files[task] = str(task_dir / f"{task}.yaml")
        Path(task_files[task]).write_text(yaml.safe_dump(spec, sort_keys=False))
    print(f"held-out check: {len(jobs)} models on the validation items, load {_load()}",
          flush=True)

    def keep(key, responses) -> None:
        out[key] = responses
        path.write_text(json.dumps(out))

    _run_pool(jobs, config, task_files, workers, keep)
    return out


# -- the zoo's fixed-coefficient merges -------------------------------------------------
def fixed_merges(zoo_dir: Path, tasks: list[str]) -> dict[str, dict[str, Any]]:
    """Per report method: the coefficient with the best mean validation accuracy over
    ``tasks`` (merge3.zoo.report's rule, restricted to the objective tasks), and the
    coefficient with the best mean *test* accuracy (an oracle no real user has)."""
    population = json.loads((zoo_dir / "population.json").read_text())
    out: dict[str, dict[str, Any]] = {}
    for member in population["members"]:
        label = member.get("method_label")
        if label not in FIXED_LABELS:
            continue
        validation = float(np.mean([member["validation"][t] for t in tasks]))
        test = float(np.mean([member["test"][t] for t in tasks]))
        entry = out.setdefault(label, {})
        if "validation" not in entry or validation > entry["validation"]["score"]:
            entry["validation"] = {"model": member["name"], "coefficient": member["coefficient"],
                                   "score": validation}
        if "oracle" not in entry or test > entry["oracle"]["score"]:
            entry["oracle"] = {"model": member["name"], "coefficient": member["coefficient"],
                               "score": test}
    return {label: out[label] for label in FIXED_LABELS if label in out}


# -- statistics -------------------------------------------------------------------------
class Bootstrap:
    """Per-item 0/1 scores of many models on the same items; resampled accuracies."""

    def __init__(self, tasks: list[str], items: dict[str, list[str]], resamples: int,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.tasks = tasks
        self.items = items
        self.draws = {t: rng.integers(0, len(items[t]), size=(resamples, len(items[t])))
                      for t in tasks}
        self.resamples = resamples

    def scores(self, responses: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
        return {t: np.array([responses[t][i] for i in self.items[t]], dtype=float)
                for t in self.tasks}

    def point(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """(T,) accuracy per task."""
        return np.array([scores[t].mean() for t in self.tasks])

    def resampled(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """(R, T) accuracy per task on each resample."""
        return np.stack([scores[t][self.draws[t]].mean(1) for t in self.tasks], axis=1)


def interval(point: float, draws: np.ndarray) -> dict[str, float]:
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"value": float(point), "low": float(low), "high": float(high)}


def _clipped_hv(points: np.ndarray, reference: np.ndarray) -> float:
    from search.pareto import hypervolume

    return hypervolume(np.maximum(points, reference), reference)


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


def analyse(arms: dict[str, dict[str, Any]], responses: dict[str, Any], zoo_dir: Path,
            tasks: list[str], resamples: int, verified: dict[str, str]) -> dict[str, Any]:
    from merge3.eval_logs import read_log

    population = json.loads((zoo_dir / "population.json").read_text())
    singles = ["base", *[f"expert-{t}" for t in population["tasks"]]]
    logs = {name: read_log(zoo_dir / "responses" / name) for name in singles}
    fixed = fixed_merges(zoo_dir, tasks)
    for entry in fixed.values():
        for rule in ("validation", "oracle"):
            logs.setdefault(entry[rule]["model"], read_log(zoo_dir / "responses"
                                                           / entry[rule]["model"]))
    items = {t: sorted(logs["base"][t]) for t in tasks}
    boot = Bootstrap(tasks, items, resamples)

    def both(resp):
        s = boot.scores(resp)
        return boot.point(s), boot.resampled(s)

    expert_point = np.array([np.mean([logs[f"expert-{t}"][t][i] for i in items[t]])
                             for t in tasks])
    expert_draws = np.stack([boot.resampled(boot.scores(logs[f"expert-{t}"]))[:, j]
                             for j, t in enumerate(tasks)], axis=1)
    # HV reference: per task the worst of the zoo's single models (base and experts)
    reference = np.array([boot.point(boot.scores(logs[m])) for m in singles]).min(0)

    def model_stats(point, draws):
        norm_point, norm_draws = point / expert_point, draws / expert_draws
        return {"accuracy": {t: float(point[j]) for j, t in enumerate(tasks)},
                "mean": interval(point.mean(), draws.mean(1)),
                "normalized": {t: float(norm_point[j]) for j, t in enumerate(tasks)},
                "normalized_mean": interval(norm_point.mean(), norm_draws.mean(1))}

    fixed_out = {}
    fixed_points, fixed_draws = {}, {}
    for label, entry in fixed.items():
        for rule in ("validation", "oracle"):
            point, draws = both(logs[entry[rule]["model"]])
            fixed_points[(label, rule)], fixed_draws[(label, rule)] = point, draws
        fixed_out[label] = {"coefficient": entry["validation"]["coefficient"],
                            "oracle_coefficient": entry["oracle"]["coefficient"],
                            **model_stats(fixed_points[(label, "validation")],
                                          fixed_draws[(label, "validation")]),
                            "oracle": model_stats(fixed_points[(label, "oracle")],
                                                  fixed_draws[(label, "oracle")])}
    # the strongest fixed merge, judged on test (the hardest comparison for the search)
    strongest = {}
    for rule in ("validation", "oracle"):
        label = max(fixed, key=lambda k: (fixed_points[(k, rule)] / expert_point).mean())
        strongest[rule] = label
    fixed_set = {rule: np.array([fixed_points[(k, rule)] for k in fixed])
                 for rule in ("validation", "oracle")}
    fixed_set_draws = {rule: np.stack([fixed_draws[(k, rule)] for k in fixed], axis=1)
                       for rule in ("validation", "oracle")}  # (R, M, T)
    hv_fixed = {rule: _clipped_hv(fixed_set[rule], reference) for rule in fixed_set}
    hv_fixed_draws = {rule: np.array([_clipped_hv(d, reference) for d in fixed_set_draws[rule]])
                      for rule in fixed_set}

    out_arms = {}
    best_draws, best_points = {}, {}
    for name, arm in arms.items():
        members = arm["front_trials"]
        points, draws = {}, {}
        for trial in members:
            points[trial], draws[trial] = both(responses[name][str(trial)])
        best = arm["best_trial"]
        best_points[name], best_draws[name] = points[best], draws[best]
        front_points = np.array([points[t] for t in members])
        front_draws = np.stack([draws[t] for t in members], axis=1)  # (R, F, T)
        estimates = np.array([[arm["members"][str(t)]["values"][task] for task in tasks]
                              for t in members])
        hv = _clipped_hv(front_points, reference)
        hv_draws = np.array([_clipped_hv(d, reference) for d in front_draws])
        entry = {
            "search": {k: arm[k] for k in ("estimator", "anchors", "wall_seconds", "candidates",
                                           "failed", "item_evaluations", "items_per_candidate",
                                           "worker_seconds", "load_before", "load_after")}
            | {"machine": arm.get("machine")},
            "best": {"trial": best,
                     "fitness": arm["members"][str(best)]["values"],
                     "fitness_stderr": arm["members"][str(best)]["stderr"],
                     **model_stats(points[best], draws[best])},
            "front": {"size": len(members),
                      "fitness_vs_true_mae": float(np.abs(estimates - front_points).mean()),
                      "hypervolume": interval(hv, hv_draws)},
        }
        for rule in ("validation", "oracle"):
            label = strongest[rule]
            fp, fd = fixed_points[(label, rule)], fixed_draws[(label, rule)]
            diff_point = (points[best] / expert_point).mean() - (fp / expert_point).mean()
            diff_draws = (draws[best] / expert_draws).mean(1) - (fd / expert_draws).mean(1)
            hv_diff = hv_draws - hv_fixed_draws[rule]
            union = np.array([_clipped_hv(np.concatenate([f, x]), reference)
                              for f, x in zip(front_draws, fixed_set_draws[rule])])
            entry[f"vs_fixed_{rule}"] = {
                "strongest_fixed": label,
                "normalized_mean_difference": interval(diff_point, diff_draws),
                "hypervolume_difference": interval(hv - hv_fixed[rule], hv_diff),
                "p_front_hv_larger": float(np.mean(hv_diff > 0)),
                # share of resamples where adding the fixed merges adds no volume
                "p_front_dominates_all": float(np.mean(np.isclose(union, hv_draws))),
                "fixed_dominated": {k: any(_dominates(points[t], fixed_points[(k, rule)])
                                           for t in members) for k in fixed},
            }
        out_arms[name] = entry
    full = arms.get("full")
    if full:
        ref = out_arms["full"]
        for name, entry in out_arms.items():
            if name == "full":
                continue
            diff = best_draws[name].mean(1) - best_draws["full"].mean(1)
            entry["vs_full"] = {
                "item_evaluation_ratio": ref["search"]["item_evaluations"]
                / entry["search"]["item_evaluations"],
                "wall_time_ratio": ref["search"]["wall_seconds"] / entry["search"]["wall_seconds"],
                "best_mean_accuracy_difference": interval(
                    best_points[name].mean() - best_points["full"].mean(), diff),
            }
            if name in verified:
                trial = verified[name]
                point, draws = both(responses[name][trial])
                items_spent = (entry["search"]["item_evaluations"]
                               + entry["front"]["size"] * sum(len(items[t]) for t in tasks))
                entry["front_verified"] = {
                    "trial": int(trial), "item_evaluations": items_spent,
                    "item_evaluation_ratio": ref["search"]["item_evaluations"] / items_spent,
                    **model_stats(point, draws),
                    "vs_full": interval(point.mean() - best_points["full"].mean(),
                                        draws.mean(1) - best_draws["full"].mean(1)),
                }
    return {"tasks": tasks, "n_test": {t: len(items[t]) for t in tasks},
            "resamples": resamples, "hv_reference": {t: float(reference[j])
                                                     for j, t in enumerate(tasks)},
            "experts": {t: float(expert_point[j]) for j, t in enumerate(tasks)},
            "fixed": fixed_out, "strongest_fixed": strongest,
            "fixed_hypervolume": {rule: interval(hv_fixed[rule], hv_fixed_draws[rule])
                                  for rule in hv_fixed},
            "arms": out_arms}


def analyse_held_out(validation: dict[str, Any], zoo_dir: Path, tasks: list[str],
                     resamples: int) -> dict[str, Any]:
    """Accuracy on the validation items (paired bootstrap), and a check that the fixed
    merges rebuilt by the search's workers score what the zoo recorded for them."""
    population = json.loads((zoo_dir / "population.json").read_text())
    recorded = {m["name"]: m.get("validation", {}) for m in population["members"]}
    fixed = fixed_merges(zoo_dir, tasks)
    first = next(iter(validation.values()))
    items = {t: sorted(first[t]) for t in tasks}
    boot = Bootstrap(tasks, items, resamples, seed=1)
    points, draws = {}, {}
    for key, responses in validation.items():
        scores = boot.scores(responses)
        points[key], draws[key] = boot.point(scores), boot.resampled(scores)
    models = {key: {"accuracy": {t: float(points[key][j]) for j, t in enumerate(tasks)},
                    "mean": interval(points[key].mean(), draws[key].mean(1))}
              for key in validation}
    mismatch = max(abs(points[f"fixed/{label}"][j]
                       - recorded[entry["validation"]["model"]][t])
                   for label, entry in fixed.items() if f"fixed/{label}" in points
                   for j, t in enumerate(tasks))
    fixed_keys = [k for k in validation if k.startswith("fixed/")]
    strongest = max(fixed_keys, key=lambda k: points[k].mean())
    comparisons = {}
    for key in validation:
        if not key.startswith(("best/", "verified/")):
            continue
        entry = {"vs_strongest_fixed": interval(points[key].mean() - points[strongest].mean(),
                                                draws[key].mean(1) - draws[strongest].mean(1))}
        if key != "best/full" and "best/full" in points:
            entry["vs_full"] = interval(points[key].mean() - points["best/full"].mean(),
                                        draws[key].mean(1) - draws["best/full"].mean(1))
        comparisons[key] = entry
    return {"n_items": {t: len(items[t]) for t in tasks}, "models": models,
            "strongest_fixed": strongest.split("/", 1)[1], "comparisons": comparisons,
            "fixed_vs_zoo_record_max_abs_difference": float(mismatch)}


# -- the tables -------------------------------------------------------------------------
def _ci(x: dict[str, float], scale: float = 100, digits: int = 1) -> str:
    return (f"{scale * x['value']:.{digits}f} [{scale * x['low']:.{digits}f}, "
            f"{scale * x['high']:.{digits}f}]")


def format_tables(results: dict[str, Any]) -> str:
    a = results["analysis"]
    tasks = a["tasks"]
    setting = results["setting"]
    lines = [
        f"Search: TSV-M over the {setting.get('zoo', 'demo')} zoo's 6 experts "
        f"({setting['genes']} genes), {setting.get('sampler', 'nsga2')} "
        f"{setting['population']} × {setting['generations']}, seed {setting['seed']}, "
        f"objectives {', '.join(tasks)} ({', '.join(str(a['n_test'][t]) for t in tasks)} "
        f"test items), {setting['workers']} workers.", "",
        "| fitness | item evaluations | fewer than full | wall time (s) | load before → after "
        "| best trial | best: fitness (mean) | best: true mean acc. % [95% CI] "
        "| Δ vs full-search best (pp) [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in a["arms"].items():
        s = arm["search"]
        vs = arm.get("vs_full")
        fitness_mean = np.mean([arm["best"]["fitness"][t] for t in tasks])
        lines.append(
            f"| {name} | {s['item_evaluations']:,} | "
            + (f"{vs['item_evaluation_ratio']:.1f}×" if vs else "1×")
            + f" | {s['wall_seconds']:.0f} | {s['load_before'][0]:.1f} → "
            f"{s['load_after'][0]:.1f} | {arm['best']['trial']} | {100 * fitness_mean:.1f} | "
            f"{_ci(arm['best']['mean'])} | "
            + (_ci(vs["best_mean_accuracy_difference"]) if vs else "reference") + " |")
        v = arm.get("front_verified")
        if v:
            lines.append(
                f"| {name} + full evaluation of its final front ({arm['front']['size']}) | "
                f"{v['item_evaluations']:,} | {v['item_evaluation_ratio']:.1f}× | | | "
                f"{v['trial']} | | {_ci(v['mean'])} | {_ci(v['vs_full'])} |")
    lines += ["", "True test accuracy (%) of each search's best member and of the fixed "
              "merges (coefficient chosen on validation over the objective tasks), "
              "normalised accuracy (% of each task's expert):", "",
              "| model | " + " | ".join(tasks) + " | mean [95% CI] | normalised mean "
              "[95% CI] |", "|" + "---|" * (len(tasks) + 3)]
    for name, arm in a["arms"].items():
        b = arm["best"]
        lines.append(f"| search best: {name} (trial {b['trial']}) | "
                     + " | ".join(f"{100 * b['accuracy'][t]:.1f}" for t in tasks)
                     + f" | {_ci(b['mean'])} | {_ci(b['normalized_mean'])} |")
    for label, f in a["fixed"].items():
        lines.append(f"| fixed: {label} ({f['coefficient']:g}) | "
                     + " | ".join(f"{100 * f['accuracy'][t]:.1f}" for t in tasks)
                     + f" | {_ci(f['mean'])} | {_ci(f['normalized_mean'])} |")
    lines.append("| experts, each on its own task | " + " | ".join(
        f"{100 * a['experts'][t]:.1f}" for t in tasks) + " | | |")
    lines += ["", "Best member vs the strongest fixed merge (normalised mean, points), and "
              "the front's hypervolume (true accuracies, reference = the worst single zoo "
              "model per task: " + ", ".join(f"{t} {100 * v:.1f}%"
                                              for t, v in a["hv_reference"].items())
              + ") vs the fixed merges' (×10⁴):", "",
              "| fitness | front size | front: fitness vs true MAE (pp) | Δ normalised mean "
              "vs strongest fixed (pp) [95% CI] | front HV [95% CI] | fixed HV | "
              "P(front HV > fixed) | P(front dominates every fixed) | fixed merges "
              "dominated | same with oracle-coefficient fixed merges: Δ norm. mean; "
              "P(HV >); dominated |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    hv_fixed = a["fixed_hypervolume"]["validation"]
    for name, arm in a["arms"].items():
        v, o = arm["vs_fixed_validation"], arm["vs_fixed_oracle"]
        lines.append(
            f"| {name} | {arm['front']['size']} | "
            f"{100 * arm['front']['fitness_vs_true_mae']:.2f} | "
            f"{_ci(v['normalized_mean_difference'])} vs {v['strongest_fixed']} | "
            f"{_ci(arm['front']['hypervolume'], 1e4, 1)} | {1e4 * hv_fixed['value']:.1f} | "
            f"{v['p_front_hv_larger']:.2f} | {v['p_front_dominates_all']:.2f} | "
            f"{sum(v['fixed_dominated'].values())}/{len(v['fixed_dominated'])} | "
            f"{_ci(o['normalized_mean_difference'])} vs {o['strongest_fixed']}; "
            f"{o['p_front_hv_larger']:.2f}; "
            f"{sum(o['fixed_dominated'].values())}/{len(o['fixed_dominated'])} |")
    h = results.get("held_out")
    if h:
        lines += ["", "Held-out check: mean accuracy (%) on the validation items ("
                  + ", ".join(f"{h['n_items'][t]}" for t in tasks) + " per task), which no "
                  "search saw. The fixed merges' coefficients were chosen on these very "
                  "items, so their numbers here are optimistic; the search members' are not. "
                  "The fixed merges rebuilt by the search's workers match the zoo's recorded "
                  "validation accuracy to "
                  f"{100 * h['fixed_vs_zoo_record_max_abs_difference']:.2f} pp.", "",
                  "| model | " + " | ".join(tasks) + " | mean [95% CI] | Δ vs full-search "
                  f"best (pp) | Δ vs fixed {h['strongest_fixed']} (pp) |",
                  "|" + "---|" * (len(tasks) + 4)]
        rank = {"best": 0, "verified": 1, "fixed": 2}
        for key, m in sorted(h["models"].items(), key=lambda kv: rank[kv[0].split("/")[0]]):
            kind, name = key.split("/", 1)
            cmp = h["comparisons"].get(key, {})
            label = {"best": f"search best: {name}", "fixed": f"fixed: {name}",
                     "verified": f"{name} + full evaluation of its front: best"}[kind]
            lines.append(f"| {label} | " + " | ".join(f"{100 * m['accuracy'][t]:.1f}"
                                                     for t in tasks)
                         + f" | {_ci(m['mean'])} | "
                         + (_ci(cmp["vs_full"]) if "vs_full" in cmp else "")
                         + " | " + (_ci(cmp["vs_strongest_fixed"]) if cmp else "") + " |")
    return "\n".join(lines) + "\n"


def format_summary(all_results: list[dict[str, Any]]) -> str:
    """One table over every seed's results: the numbers the issue's targets are about."""
    lines = ["| seed | fitness | item evaluations (× fewer) | wall s (× faster) | best: true "
             "mean acc. % [95% CI] | Δ vs full-search best, pp [95% CI] | Δ normalised mean "
             "vs strongest fixed merge, pp [95% CI] | front dominates all 6 fixed merges "
             "(share of resamples) | held-out (validation): Δ vs full best; Δ vs strongest "
             "fixed, pp |", "|---|---|---|---|---|---|---|---|---|"]
    for results in all_results:
        a, seed = results["analysis"], results["setting"]["seed"]
        held = results.get("held_out", {}).get("comparisons", {})
        for name, arm in a["arms"].items():
            s, vs = arm["search"], arm.get("vs_full")
            fixed = arm["vs_fixed_validation"]
            h = held.get(f"best/{name}", {})
            lines.append(
                f"| {seed} | {name} | {s['item_evaluations']:,} ("
                + (f"{vs['item_evaluation_ratio']:.1f}×" if vs else "1×") + ") | "
                f"{s['wall_seconds']:.0f} (" + (f"{vs['wall_time_ratio']:.1f}×" if vs else "1×")
                + f") | {_ci(arm['best']['mean'])} | "
                + (_ci(vs["best_mean_accuracy_difference"]) if vs else "reference") + " | "
                f"{_ci(fixed['normalized_mean_difference'])} vs {fixed['strongest_fixed']} | "
                f"{sum(fixed['fixed_dominated'].values())}/{len(fixed['fixed_dominated'])} "
                f"dominated ({fixed['p_front_dominates_all']:.2f}) | "
                + (_ci(h["vs_full"]) + "; " if "vs_full" in h else "reference; " if h else "")
                + (_ci(h["vs_strongest_fixed"]) if h else "") + " |")
            v = arm.get("front_verified")
            if v:
                hv = held.get(f"verified/{name}", {})
                lines.append(
                    f"| {seed} | {name} + full evaluation of its final front | "
                    f"{v['item_evaluations']:,} ({v['item_evaluation_ratio']:.1f}×) | | "
                    f"{_ci(v['mean'])} | {_ci(v['vs_full'])} | | | "
                    + (_ci(hv["vs_full"]) + "; " + _ci(hv["vs_strongest_fixed"]) if hv else "")
                    + " |")
    return "\n".join(lines) + "\n"


def _write_summary(folder: Path) -> str:
    all_results = [json.loads(p.read_text()) for p in sorted(folder.glob("results-seed*.json"))]
    text = format_summary(all_results)
    (folder / "summary.md").write_text(text)
    return text


def _portable(recipe: dict[str, Any]) -> dict[str, Any]:
    """A member's recipe with model directories reduced to their zoo names."""
    out = json.loads(json.dumps(recipe))
    if out.get("base_model"):
        out["base_model"] = Path(out["base_model"]).name
    for entry in out.get("models", []):
        entry["model"] = Path(entry["model"]).name
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, help="run directories and caches")
    parser.add_argument("--zoo-size", default="demo", choices=("demo", "bench"),
                        help="bench: the demo zoo with 1000 test items for word_order and "
                             "text_source, so k = 20 anchors are 1/50 of a task")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help="objective tasks, comma-separated, or 'all'")
    parser.add_argument("--population", type=int, default=12)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                        help="comma-separated: full, EST@K (K static anchors per task), "
                             "EST@C..B (adaptive: core C, Fisher top-ups to B items per task)")
    parser.add_argument("--batch", type=int, default=5, help="adaptive top-up batch size")
    parser.add_argument("--sampler", default="nsga2",
                        help="the searches' sampler (search.strategy.SAMPLERS)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=HERE,
                        help="folder for results-seed<S>.json and .md")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite every results-seed*.md from its JSON")
    args = parser.parse_args(argv)
    if args.report_only:
        for path in sorted(args.out.glob("results-seed*.json")):
            results = json.loads(path.read_text())
            path.with_suffix(".md").write_text(format_tables(results))
            print(format_tables(results))
        print(_write_summary(args.out))
        return 0
    if args.work_dir is None:
        parser.error("--work-dir is needed (unless --report-only)")
    import torch

    torch.set_num_threads(1)
    from merge3.zoo.build import build_zoo
    from search.demo import calibrate_zoo_banks

    zoo_dir = build_zoo(args.zoo_size, progress=False)
    banks = calibrate_zoo_banks(zoo_dir, quiet=True)
    all_tasks = sorted(p.stem for p in (zoo_dir / "tasks").glob("*.yaml"))
    args.tasks = all_tasks if args.tasks == "all" else args.tasks.split(",")
    machine = _machine()
    work = args.work_dir / f"seed{args.seed}"
    specs = [ArmSpec.parse(text) for text in args.arms.split(",")]
    if specs[0].name != "full":
        parser.error("--arms must start with 'full' (every other arm is compared with it)")
    configs, arms = {}, {}
    for spec in specs:
        configs[spec.name] = arm_config(zoo_dir, banks, args, spec)
        arms[spec.name] = run_arm(spec.name, configs[spec.name], work / spec.directory)
    responses = evaluate_members(arms, configs["full"], work, args.workers)
    verified = verified_trials(arms, responses, args.tasks)
    validation = held_out(arms, configs["full"], zoo_dir, work, args.workers, verified)
    experts = len(configs["full"]["experts"])
    genes = sum((experts if group.get("per") == "model" else 1) * group.get("layer_groups", 1)
                for group in configs["full"]["genome"].values())
    results = {
        "machine": machine,
        "command": ("python benchmarks/search_cost/run.py --work-dir DIR "
                    f"--zoo-size {args.zoo_size} "
                    f"--tasks {','.join(args.tasks)} --population {args.population} "
                    f"--generations {args.generations} --arms {args.arms} "
                    f"--batch {args.batch} --sampler {args.sampler} --workers {args.workers} "
                    f"--seed {args.seed} --resamples {args.resamples}"),
        "setting": {"zoo": args.zoo_size, "population": args.population,
                    "generations": args.generations,
                    "seed": args.seed, "workers": args.workers, "genes": genes,
                    "method": "tsv_m", "arms": args.arms, "sampler": args.sampler},
        "analysis": analyse(arms, responses, zoo_dir, args.tasks, args.resamples, verified),
        "held_out": analyse_held_out(validation, zoo_dir, args.tasks, args.resamples),
        "fronts": {name: {"best_trial": arm["best_trial"], "front_trials": arm["front_trials"],
                          "fitness": {t: arm["members"][t]["values"] for t in arm["members"]},
                          "recipes": {t: _portable(arm["members"][t]["recipe"])
                                      for t in arm["members"]}}
                   for name, arm in arms.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"results-seed{args.seed}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    stem.with_suffix(".md").write_text(format_tables(results))
    print(format_tables(results))
    print(_write_summary(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

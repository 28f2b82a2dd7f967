"""The main job (``merge3 demo``): an evolutionary merge search on the built-in zoo.

1. Build (or reuse) the MiniLM zoo: a pretrained encoder, one fine-tuned expert per
   text-classification task, item pools and a population of past responses.
2. Calibrate one IRT item bank per task from those past responses (cached in the zoo).
3. Search TSV-M merges of the experts — per-expert, per-layer-group task weights and a
   global α — with a genetic algorithm on the mean estimate, scored by mp-IRT on k anchors per
   task by local Ray workers; every candidate goes to MLflow.
4. Print the Pareto front next to the zoo's fixed-coefficient merges, and where the
   MLflow UI shows the search.

``merge3 demo --merges`` runs the earlier demo instead: every merge method on a small
family of generated Llama checkpoints.

This is an application on top of the packages (merge3, irt, evaluators, search), so it
lives here and not in the merge library; ``merge3 demo`` imports it when run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from merge3.checkpoints import Checkpoint
from merge3.merging import run_merge
from merge3.methods import METHODS
from merge3.methods.tsv import orthogonalize, singular_task_interference, task_singular_vectors
from merge3.recipe import load_recipe
from merge3.task_vectors import TaskVector
from merge3.testing.synthetic import build_family

__all__ = ["run_demo", "demo_search_config", "calibrate_zoo_banks", "run_merge_demo",
           "DEMO_SAMPLER"]

# the sampler the demo searches with: `ga` (NSGA-II on the mean) climbed on both seeds of
# benchmarks/main_job/climb.md with intervals above 0, NSGA-II on 6 objectives on one
# (docs/search.md, "Samplers")
DEMO_SAMPLER = "ga"


def calibrate_zoo_banks(zoo_dir: Path, *, quiet: bool = False) -> Path:
    """One item bank per task from the zoo's past responses (cached beside them)."""
    from irt import calibrate, load_responses, save_bank

    banks = zoo_dir / "banks"
    marker = banks / "complete.json"
    stamp = (zoo_dir / "recipe.json").read_text() if (zoo_dir / "recipe.json").exists() else ""
    if marker.exists() and json.loads(marker.read_text()).get("zoo_recipe") == stamp:
        return banks
    responses = load_responses(zoo_dir / "responses")
    for task in sorted(set(responses.item_tasks)):
        columns = [i for i, t in enumerate(responses.item_tasks) if t == task]
        if not quiet:
            print(f"calibrating the {task} item bank ({responses.n_models} models × "
                  f"{len(columns)} items) ...")
        # D = 2: the dimension the validation chose on real populations (benchmarks/irt);
        # searching D here would cost four extra fits per task
        bank = calibrate(responses.select_items(columns), model="mirt", dims=2,
                         engine="scipy")
        save_bank(bank, banks / task)
    marker.write_text(json.dumps({"zoo_recipe": stamp}))
    return banks


def demo_search_config(zoo_dir: Path, banks: Path, *, size: str, population: int,
                       generations: int, anchors: int, workers: int,
                       sampler: str = DEMO_SAMPLER, seed: int = 0) -> dict[str, Any]:
    """The demo's search config; its name (and run directory) is ``zoo-SIZE-tsv``, with
    ``-SAMPLER`` and ``-seedN`` added when they are not the demo's defaults."""
    tasks = {p.stem: str(p.resolve()) for p in sorted((zoo_dir / "tasks").glob("*.yaml"))}
    suffix = "" if size == "demo" else f"@{size}"
    name = f"zoo-{size}-tsv" + ("" if sampler == DEMO_SAMPLER else f"-{sampler}") + (
        "" if seed == 0 else f"-seed{seed}")
    return {
        "name": name,
        "base_model": f"zoo:minilm/base{suffix}",
        "experts": {task: f"zoo:minilm/expert/{task}{suffix}" for task in tasks},
        "method": "tsv_m",
        "genome": {"weight": {"per": "model", "layer_groups": 2, "low": 0.0, "high": 1.5},
                   "alpha": {"low": 0.5, "high": 2.0}},
        "tasks": tasks,
        "fitness": {"estimator": "mp-irt", "item_bank": str(banks.resolve()),
                    "anchors": anchors},
        "strategy": {"sampler": sampler, "population": population, "generations": generations,
                     "seed": seed},
        "workers": {"count": workers, "cpus": 1},
    }


def run_demo(out: Path, *, quiet: bool = False, size: str = "demo", population: int = 12,
             generations: int = 6, anchors: int = 30, workers: int = 2,
             sampler: str = DEMO_SAMPLER, seed: int = 0) -> int:
    from merge3.zoo.build import build_zoo
    from search.climb import compare_climb
    from search.config import parse_config
    from search.display import print_climb, print_front
    from search.run import run_search
    from search.rundir import RunState

    console = Console(quiet=quiet)
    started = time.perf_counter()
    zoo_dir = build_zoo(size, progress=not quiet)
    banks = calibrate_zoo_banks(zoo_dir, quiet=quiet)
    config = demo_search_config(zoo_dir, banks, size=size, population=population,
                                generations=generations, anchors=anchors, workers=workers,
                                sampler=sampler, seed=seed)
    run_dir = out / config["name"]
    resume = RunState(run_dir).started
    console.print(f"searching TSV-M merges of {len(config['experts'])} experts with "
                  f"{sampler} (seed {seed}): {population} × {generations} candidates, "
                  f"{anchors} anchors per task" + (" (resuming)" if resume else ""))
    text = yaml.safe_dump(config, sort_keys=False)
    parsed = parse_config(config)
    outcome = run_search(parsed, run_dir, resume=resume, progress=not quiet, config_text=text)
    objectives = list(config["tasks"])
    if not quiet:
        print_front(outcome.front, objectives)
        _print_references(console, zoo_dir, objectives)
    console.print("scoring generation 0's and the final front's best-mean members on every "
                  "test item ...")
    # one torch thread: two stall for minutes on a loaded 2-core machine (ENVIRONMENT.md)
    climb = compare_climb(parsed, run_dir, threads=1)  # also written to climb.json
    if not quiet:
        print_climb(climb, objectives)
    console.print(f"\n{outcome.evaluated} candidates, {outcome.item_evaluations} item "
                  f"evaluations, {time.perf_counter() - started:.0f} s in all.")
    console.print(f"MLflow UI (experiment {outcome.experiment!r}): .venv/bin/mlflow server "
                  f"--backend-store-uri {outcome.tracking_uri} --host 127.0.0.1 --port 5000 "
                  "--workers 1", soft_wrap=True)
    if outcome.experiment_id is not None:
        console.print(f"then open http://127.0.0.1:5000/#/experiments/{outcome.experiment_id}"
                      "/runs?workflowType=machine_learning", soft_wrap=True)
    console.print(f"export a front member: merge3 export {run_dir} --trial N OUT_DIR")
    return 0


def _print_references(console: Console, zoo_dir: Path, objectives: list[str]) -> None:
    """The zoo report's fixed-coefficient merges, for comparison with the front."""
    report_path = zoo_dir / "report.json"
    if not report_path.exists():
        return
    report = json.loads(report_path.read_text())
    rows = [(name, accuracy) for name, accuracy in report.get("models", {}).items()]
    rows += [(f"merge: {name}", entry.get("accuracy", {}))
             for name, entry in report.get("merges", {}).items()]
    from rich import box

    from search.display import task_labels, task_legend

    labels, wide = task_labels(objectives, console.width)
    table = Table(title="the zoo's experts and fixed-coefficient merges: true test accuracy %",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("mean", justify="right", style="bold")
    for name, accuracy in rows:
        if isinstance(accuracy, dict) and all(t in accuracy for t in objectives):
            values = [100 * float(accuracy[t]) for t in objectives]
            table.add_row(name, *[f"{v:.1f}" for v in values],
                          f"{sum(values) / len(values):.1f}")
    if table.row_count:
        console.print(table)
        if not wide:
            console.print(task_legend(labels, objectives), style="dim")
        console.print("[dim]The front shows IRT estimates from anchors; `merge3 export` a "
                      "member and `merge3 eval` it for its true accuracy.[/dim]")


# -- the merge-library demo (`merge3 demo --merges`) ----------------------------------------------
_PARAMS = {
    "ties": {"density": 0.3},
    "dare_linear": {"density": 0.5},
    "dare_ties": {"density": 0.5},
    "breadcrumbs": {"density": 0.5, "gamma": 0.05},
    "breadcrumbs_ties": {"density": 0.5, "gamma": 0.05},
    "task_arithmetic": {"lambda": 0.5},
}


def write_recipes(family: dict[str, Path], recipe_dir: Path) -> list[Path]:
    recipe_dir.mkdir(parents=True, exist_ok=True)
    experts = [p for name, p in family.items() if name != "base"]
    paths = []
    for name in METHODS:
        method = METHODS.get(name)
        if method.align:  # alignment is for models trained from different seeds
            continue
        models = experts[: method.max_models] if method.max_models else experts
        recipe = {
            "merge_method": name,
            "models": [{"model": str(p.resolve())} for p in models],
            "parameters": dict(_PARAMS.get(name, {})),
            "dtype": "float32",
        }
        if method.base != "unused":
            recipe["base_model"] = str(family["base"].resolve())
        path = recipe_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        paths.append(path)
    return paths


def _distance(a: Checkpoint, b: Checkpoint) -> float:
    total = 0.0
    for name in a.names():
        x = a.get(name)
        if x.is_floating_point():
            total += float(((x.double() - b.get(name).double()) ** 2).sum())
    return total ** 0.5


def _sti_before_after(family: dict[str, Path]) -> tuple[float, float]:
    base = Checkpoint(family["base"])
    vectors = [TaskVector.from_checkpoints(base, p) for n, p in family.items() if n != "base"]
    name = next(n for n in vectors[0] if n.endswith("mlp.down_proj.weight"))
    deltas = [v[name].double() for v in vectors]
    k = min(deltas[0].shape) // len(deltas)
    u, s, v = task_singular_vectors(deltas, k)
    return singular_task_interference(u, s, v), singular_task_interference(
        orthogonalize(u), s, orthogonalize(v))


def run_merge_demo(out: Path, *, quiet: bool = False) -> int:
    console = Console(quiet=quiet)
    out.mkdir(parents=True, exist_ok=True)
    models_dir = out / "models"
    if not (models_dir / "base" / "config.json").exists():
        console.print(f"building a base and 3 experts (tiny Llama) in {models_dir} ...")
        family = build_family(models_dir, "llama", experts=3, seed=0, hidden=64, layers=4)
    else:
        family = {p.name: p for p in sorted(models_dir.iterdir()) if p.is_dir()}
    recipes = write_recipes(family, out / "recipes")
    base = Checkpoint(family["base"])
    experts = {n: Checkpoint(p) for n, p in family.items() if n != "base"}
    table = Table(title="every merge method on the demo family (distances in weight space)")
    for column in ("method", "seconds", "‖θ−θ0‖", *[f"to {n}" for n in experts]):
        table.add_column(column, justify="right" if column != "method" else "left")
    for recipe_path in recipes:
        recipe = load_recipe(recipe_path)
        start = time.perf_counter()
        merged_dir = run_merge(recipe, out / "merged" / recipe.merge_method, overwrite=True,
                               progress=False)
        seconds = time.perf_counter() - start
        merged = Checkpoint(merged_dir)
        table.add_row(recipe.merge_method, f"{seconds:.2f}", f"{_distance(merged, base):.3f}",
                      *[f"{_distance(merged, e):.3f}" for e in experts.values()])
    console.print(table)
    before, after = _sti_before_after(family)
    console.print(f"singular task interference of one MLP matrix: {before:.4f} before TSV-M's "
                  f"orthogonalisation, {after:.2e} after")
    console.print(f"recipes: {out / 'recipes'}  merged models: {out / 'merged'}")
    return 0

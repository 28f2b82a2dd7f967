"""The main job on the built-in default (``merge3 demo``).

Until the zoo and the search land, the demo builds a small family of real Llama
checkpoints (a base and three experts), writes one mergekit-style recipe per merge
method, runs every merge through the streaming executor, and reports for each merge
its time, how far it moved from the base, its distance to each expert and, for the
SVD methods, the singular task interference the method removed.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from merge3.checkpoints import Checkpoint
from merge3.merging import run_merge
from merge3.methods import METHODS
from merge3.methods.tsv import singular_task_interference, task_singular_vectors
from merge3.recipe import load_recipe
from merge3.synthetic import build_family
from merge3.task_vectors import TaskVector

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
        models = experts[:1] if method.max_models == 1 else experts
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
    from merge3.methods.tsv import orthogonalize

    return singular_task_interference(u, s, v), singular_task_interference(
        orthogonalize(u), s, orthogonalize(v))


def run_demo(out: Path, *, quiet: bool = False) -> int:
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
    console.print("[dim]These tiny models carry no skill: the demo shows the merge machinery. "
                  "The evolutionary search on the built-in zoo replaces it once it lands.[/dim]")
    return 0

"""Calibration that transfers: D and the ability prior chosen on held-out models, or fixed?

For every outer split of a population (random 20% held out, seeds 0–2; the strongest 20%
held out), the estimators' MAE on the held-out models is measured for every setting
(D, prior inflation) of a grid, and five ways of choosing a setting are compared:

- **fixed**: D = 2 and prior inflation 1 (the demo's banks and the estimators' default);
- **auto-D**: calibrate()'s own rule (D among 2, 5, 10, 15 by held-out p-IRT error at 100
  random items, simplest within 0.25 pp), inflation 1;
- **CV random**: the setting with the lowest 5-fold cross-validated MAE over the *training*
  models (folds of random models; the estimator, k and selector of the outer test);
- **CV strongest**: the lowest MAE on the strongest 20% of the training models, calibrated
  on the rest (the outer strongest split, one level down: what a search needs);
- **CV both**: the lowest mean of the two;
- and the **oracle**: the best setting on the outer test itself (a ceiling, not a choice).

The θ prior inflation acts on p-IRT and gp-IRT (N(μ, c·Σ) of the population, irt.ability);
mp-/gmp-IRT combine bank abilities and use no θ prior, so for them only D is chosen.
Populations: the scikit-learn classifiers (one bank over all 3057 items, k = 50) and the demo
zoo (one bank per task, 300 items, k = 30 as the demo's search; MAE averaged over tasks).
Anchors: k-means on correctness, seeds 0–2 (the default selector).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/irt/transfer.py \\
        --population sklearn=benchmarks/irt/data/sklearn_population.csv \\
        --population zoo=~/.cache/merge3/minilm/demo/responses
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from irt import AnchorEstimator, ResponseMatrix, calibrate, load_responses, select_anchors
from irt.bank import ItemBank
from irt.validate import split_models

DIMS = (1, 2, 3, 5, 10)
INFLATIONS = (1.0, 2.0, 4.0, 8.0)
ESTIMATORS = ("p-irt", "gp-irt", "mp-irt", "gmp-irt")
USES_THETA_PRIOR = {"p-irt", "gp-irt"}
FIXED = (2, 1.0)
ANCHOR_SEEDS = (0, 1, 2)
FOLDS = 5

Setting = tuple[int, float]
Errors = dict[str, dict[Setting, float]]  # estimator -> setting -> MAE pp


def banks_of(name: str, matrix: ResponseMatrix) -> list[tuple[str, ResponseMatrix, int]]:
    """(bank name, responses, k): the zoo one bank per task (k = 30), else one bank, k = 50."""
    if name == "zoo":
        tasks = np.array(matrix.item_tasks)
        return [(t, matrix.select_items(np.flatnonzero(tasks == t)), 30)
                for t in matrix.tasks()]
    return [("all", matrix, 50)]


def evaluate(bank: ItemBank, test: ResponseMatrix, k: int) -> Errors:
    """MAE (pp) on ``test`` for each estimator × inflation, averaged over anchor seeds."""
    test = test.aligned_to(bank.item_ids)
    truth = np.nanmean(test.scores, axis=1)
    sums: Errors = {e: {} for e in ESTIMATORS}
    for seed in ANCHOR_SEEDS:
        anchors = select_anchors(bank, k, "kmeans-correctness", seed)
        y = test.scores[:, anchors.indices]
        for inflation in INFLATIONS:
            prepared = AnchorEstimator(bank, anchors, prior_inflation=inflation)
            for estimator in ESTIMATORS:
                if estimator not in USES_THETA_PRIOR and inflation != INFLATIONS[0]:
                    continue  # no θ prior: the same as the first inflation (filled below)
                estimate, _ = prepared.predict(estimator, y)
                error = 100 * float(np.mean(np.abs(estimate - truth)))
                key = (bank.dims, inflation)
                sums[estimator][key] = sums[estimator].get(key, 0.0) + error / len(ANCHOR_SEEDS)
    for estimator in ESTIMATORS:
        if estimator not in USES_THETA_PRIOR:
            for inflation in INFLATIONS[1:]:
                sums[estimator][(bank.dims, inflation)] = \
                    sums[estimator][(bank.dims, INFLATIONS[0])]
    return sums


def grid(train: ResponseMatrix, test: ResponseMatrix, k: int) -> Errors:
    """Every (D, inflation) of the grid: calibrate on ``train``, estimate ``test``."""
    errors: Errors = {e: {} for e in ESTIMATORS}
    for dims in DIMS:
        bank = calibrate(train, dims=dims, seed=0)
        for estimator, values in evaluate(bank, test, k).items():
            errors[estimator].update(values)
    return errors


def mean_errors(parts: Sequence[Errors], weights: Sequence[float] | None = None) -> Errors:
    weights = list(weights) if weights is not None else [1.0] * len(parts)
    total = sum(weights)
    return {e: {s: sum(w * p[e][s] for p, w in zip(parts, weights)) / total
                for s in parts[0][e]} for e in ESTIMATORS}


def cross_validated(train: ResponseMatrix, k: int, seed: int) -> tuple[Errors, Errors]:
    """(random 5-fold CV errors, strongest-20% errors) over the training models only."""
    order = np.random.default_rng(1000 + seed).permutation(train.n_models)
    folds = np.array_split(order, FOLDS)
    parts, sizes = [], []
    for fold in folds:
        rest = np.setdiff1d(np.arange(train.n_models), fold)
        parts.append(grid(train.select_models(rest), train.select_models(np.sort(fold)), k))
        sizes.append(fold.size)
    inner_train, inner_test = split_models(train.accuracies(), "strongest", 0.2, 0)
    strongest = grid(train.select_models(inner_train), train.select_models(inner_test), k)
    return mean_errors(parts, sizes), strongest


def best(errors: dict[Setting, float]) -> Setting:
    """The lowest-error setting; ties go to the simpler one (smaller D, then inflation)."""
    return min(errors, key=lambda s: (round(errors[s], 6), s))


def outer_split(matrix: ResponseMatrix, name: str, split: str, seed: int
                ) -> dict[str, object]:
    """One outer split of one population: every bank's grid, CV and auto-D, combined."""
    outer, cv_random, cv_strong, auto_dims, auto_errors = [], [], [], [], []
    started = time.perf_counter()
    for bank_name, responses, k in banks_of(name, matrix):
        train_rows, test_rows = split_models(responses.accuracies(), split, 0.2, seed)
        train, test = responses.select_models(train_rows), responses.select_models(test_rows)
        outer.append(grid(train, test, k))
        random_cv, strong_cv = cross_validated(train, k, seed)
        cv_random.append(random_cv)
        cv_strong.append(strong_cv)
        auto = calibrate(train, seed=0)
        auto_dims.append(auto.dims)
        auto_errors.append(evaluate(auto, test, k))
        print(f"  {name} {split} seed {seed} bank {bank_name}: auto D = {auto.dims}, "
              f"{time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}",
              flush=True)
    outer_mean, random_mean, strong_mean = (mean_errors(x) for x in
                                            (outer, cv_random, cv_strong))
    both = {e: {s: (random_mean[e][s] + strong_mean[e][s]) / 2 for s in random_mean[e]}
            for e in ESTIMATORS}
    result: dict[str, object] = {"population": name, "split": split, "seed": seed,
                                 "auto_dims": auto_dims,
                                 "seconds": round(time.perf_counter() - started, 1)}
    rows = {}
    for estimator in ESTIMATORS:
        candidates = outer_mean[estimator]
        if estimator not in USES_THETA_PRIOR:
            keep = [s for s in candidates if s[1] == INFLATIONS[0]]
        else:
            keep = list(candidates)

        def pick(errors: dict[Setting, float], keep: list[Setting] = keep) -> Setting:
            return best({s: errors[s] for s in keep})

        # auto-D per bank (the zoo's six banks may differ): each bank's own auto D
        auto_error = float(np.mean([a[estimator][(d, INFLATIONS[0])]
                                    for a, d in zip(auto_errors, auto_dims)]))
        choices = {"fixed": FIXED, "CV random": pick(random_mean[estimator]),
                   "CV strongest": pick(strong_mean[estimator]),
                   "CV both": pick(both[estimator]), "oracle": pick(candidates)}
        rows[estimator] = {"auto-D": {"setting": auto_dims, "mae_pp": auto_error},
                           **{c: {"setting": list(s), "mae_pp": candidates[s]}
                              for c, s in choices.items()}}
    result["choices"] = rows
    result["outer_grid"] = {e: {f"{d},{c:g}": v for (d, c), v in outer_mean[e].items()}
                            for e in ESTIMATORS}
    result["cv_random_grid"] = {e: {f"{d},{c:g}": v for (d, c), v in random_mean[e].items()}
                                for e in ESTIMATORS}
    result["cv_strongest_grid"] = {e: {f"{d},{c:g}": v for (d, c), v in strong_mean[e].items()}
                                   for e in ESTIMATORS}
    return result


def report(results: list[dict[str, object]], populations: list[str], command: str) -> str:
    machine = (f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
               f"Python {platform.python_version()}, CPU shared with other engineers' jobs")
    lines = ["# Calibration that transfers: D and the ability prior, chosen or fixed\n",
             f"Command: `{command}`\n", f"Machine: {machine}.\n",
             f"Grid: D ∈ {DIMS}, θ-prior inflation ∈ {INFLATIONS}; anchors k-means on "
             "correctness, seeds 0–2. MAE in pp on the outer held-out models; `random` = "
             "mean over the outer seeds run ("
             + "; ".join(f"{name}: " + ", ".join(str(r["seed"]) for r in results
                                                 if r["population"] == name
                                                 and r["split"] == "random")
                         for name in populations)
             + "). Chosen settings in brackets (D, inflation).\n"]
    choices = ("fixed", "auto-D", "CV random", "CV strongest", "CV both", "oracle")
    for name in populations:
        for split in ("random", "strongest"):
            runs = [r for r in results if r["population"] == name and r["split"] == split]
            if not runs:
                continue
            lines += [f"## {name}, {split} held-out models", "",
                      "| estimator | " + " | ".join(choices) + " |",
                      "|---|" + "---|" * len(choices)]
            for estimator in ESTIMATORS:
                cells = []
                for c in choices:
                    values = [r["choices"][estimator][c] for r in runs]
                    mae = np.mean([v["mae_pp"] for v in values])
                    settings = "; ".join(
                        ("/".join(map(str, v["setting"])) if c == "auto-D" else
                         f"{v['setting'][0]},{v['setting'][1]:g}") for v in values)
                    cells.append(f"{mae:.2f} [{settings}]")
                lines.append(f"| {estimator} | " + " | ".join(cells) + " |")
            lines.append("")
            for estimator in ("p-irt", "gmp-irt"):
                lines += [f"Outer MAE of every setting, {estimator} ({name}, {split}):", "",
                          "| D | " + " | ".join(f"×{c:g}" for c in INFLATIONS) + " |",
                          "|---|" + "---|" * len(INFLATIONS)]
                for dims in DIMS:
                    cells = []
                    for c in INFLATIONS:
                        key = f"{dims},{c:g}"
                        mae = np.mean([r["outer_grid"][estimator][key] for r in runs])
                        cells.append(f"{mae:.2f}")
                    lines.append(f"| {dims} | " + " | ".join(cells) + " |")
                lines.append("")
    return "\n".join(lines)


def main() -> None:
    global DIMS, INFLATIONS  # --dims / --inflations narrow the grid (quick runs)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")],
                        default=[0, 1, 2])
    parser.add_argument("--dims", type=lambda s: tuple(int(x) for x in s.split(",")),
                        default=DIMS)
    parser.add_argument("--inflations", type=lambda s: tuple(float(x) for x in s.split(",")),
                        default=INFLATIONS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/irt/transfer"))
    args = parser.parse_args()
    DIMS, INFLATIONS = args.dims, args.inflations
    partial = args.out.with_suffix(".json")
    # an interrupted run keeps its finished splits: they are not fitted again
    try:
        results = json.loads(partial.read_text(encoding="utf-8")) if partial.exists() else []
    except json.JSONDecodeError as error:
        raise SystemExit(f"{partial}: not the JSON this script writes ({error}); move it away "
                         "to start over, or restore it to resume") from error
    done = {(r["population"], r["split"], r["seed"]) for r in results}
    names = []
    for spec in args.population:
        name, _, path = spec.partition("=")
        names.append(name)
        splits = [(split, seed) for split, seed in itertools.chain(
            (("random", s) for s in args.seeds), [("strongest", 0)])
            if (name, split, seed) not in done]
        if not splits:
            continue
        matrix = load_responses(os.path.expanduser(path))
        for split, seed in splits:
            print(f"{name} {split} seed {seed} ...", flush=True)
            results.append(outer_split(matrix, name, split, seed))
            partial.write_text(json.dumps(results, indent=1), encoding="utf-8")
    results = [r for r in results if r["population"] in names]
    command = ("OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/irt/transfer.py "
               + " ".join(f"--population {p.replace(os.path.expanduser('~'), '~')}"
                          for p in args.population))
    args.out.with_suffix(".md").write_text(report(results, names, command) + "\n",
                                           encoding="utf-8")


if __name__ == "__main__":
    main()

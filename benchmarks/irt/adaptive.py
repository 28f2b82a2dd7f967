"""Static anchors vs adaptive testing at equal item budgets, every estimator (issue #18).

For each split of `merge3 irt validate` (random: 20% of models held out, seeds 0-2; and the
strongest 20% held out) a bank is calibrated on the training models (scipy engine, D
chosen on held-out models by the first calibration, then kept), and every held-out model
is estimated from B items (B in --budgets) in these arms:

- ``static``: B k-means-on-correctness anchors (flagged items left out), the default path;
- ``static-all``: the same, flagged items allowed (what flagging changes);
- ``adaptive-c<f>``: a shared core of round(f·B) k-means anchors, then top-up batches of
  --batch items by D-optimality at the model's MAP ability (irt.AdaptiveTest, no SE
  stop: every arm answers exactly B items), every estimator on the union;
- ``adaptive-acc-c<f>``: the same with the "accuracy" (c-optimal) criterion.

The held-out models answered every item, so each adaptive test is replayed from their
recorded answers. MAE in percentage points (and Kendall τ, s.e., coverage) is scored by
irt.validate.score_estimates against the model's accuracy on the whole bank.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/irt/adaptive.py \
        benchmarks/irt/data/sklearn_population.csv --out benchmarks/irt/adaptive_sklearn
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from irt import (
    ESTIMATORS,
    AdaptiveTest,
    AnchorEstimator,
    ItemBank,
    calibrate,
    load_responses,
    select_anchors,
)
from irt.validate import score_estimates, split_models

SELECTOR = "kmeans-correctness"


def _score_rows(values: dict[str, list[float]], stderrs: dict[str, list[float]],
                truth: np.ndarray, base: dict) -> list[dict]:
    return [{**base, "estimator": name, "n_test": truth.size,
             **score_estimates(np.array(values[name]), np.array(stderrs[name]), truth)}
            for name in values]


def static_arm(bank: ItemBank, scores: np.ndarray, budget: int, seed: int,
               exclude_flagged: bool) -> tuple[dict, dict]:
    anchors = select_anchors(bank, budget, SELECTOR, seed, exclude_flagged=exclude_flagged)
    prepared = AnchorEstimator(bank, anchors)
    y = scores[:, anchors.indices]
    values, stderrs = {}, {}
    for name in ESTIMATORS:
        v, s = prepared.predict(name, y)
        values[name], stderrs[name] = list(v), list(s)
    return values, stderrs


def adaptive_arm(bank: ItemBank, scores: np.ndarray, budget: int, core_size: int,
                 batch: int, seed: int, criterion: str) -> tuple[dict, dict, float]:
    core = select_anchors(bank, core_size, SELECTOR, seed)
    test = AdaptiveTest(bank, core, budget=budget, batch=batch, se_target=None,
                        estimator="p-irt", criterion=criterion)
    lookup = {item: i for i, item in enumerate(bank.item_ids)}
    values: dict[str, list[float]] = {n: [] for n in ESTIMATORS}
    stderrs: dict[str, list[float]] = {n: [] for n in ESTIMATORS}
    asked = []
    for row in scores:
        answers = test.run(lambda ids, row=row: {i: float(row[lookup[i]]) for i in ids})
        asked.append(len(answers))
        prepared, y = test.responses(answers)
        for name in ESTIMATORS:
            v, s = prepared.predict(name, y)
            values[name].append(float(v[0]))
            stderrs[name].append(float(s[0]))
    assert set(asked) == {budget}, asked
    return values, stderrs, float(np.mean(asked))


def run(path: list[str], out: Path, budgets: list[int], core_fractions: list[float],
        batch: int, seeds: list[int], splits: list[str], criteria: list[str]) -> None:
    responses = load_responses(path).binarized()
    accuracy = responses.accuracies()
    rows: list[dict] = []
    info: dict = {"n_models": responses.n_models, "n_items": responses.n_items,
                  "calibrations": []}
    dims = None
    started = time.perf_counter()
    for split in splits:
        split_seeds = seeds if split == "random" else seeds[:1]
        for split_seed in split_seeds:
            train, test_rows = split_models(accuracy, split, 0.2, split_seed)
            t0 = time.perf_counter()
            bank = calibrate(responses.select_models(train), dims=dims, seed=split_seed)
            dims = bank.dims
            info["calibrations"].append({
                "split": split, "seed": split_seed, "dims": bank.dims,
                "seconds": round(time.perf_counter() - t0, 1), "n_train": int(train.size),
                "n_test": int(test_rows.size), "flagged": bank.flags.to_json(bank.item_ids)})
            print(f"{split} seed {split_seed}: D = {bank.dims}, "
                  f"{time.perf_counter() - t0:.0f} s; flagged: "
                  + bank.flags.summary(bank.item_ids, bank.n_items, show=3), flush=True)
            scores = responses.scores[test_rows]
            truth = np.nanmean(scores, axis=1)
            anchor_seeds = [split_seed] if split == "random" else seeds
            for seed in anchor_seeds:
                for budget in budgets:
                    base = {"split": split, "split_seed": split_seed, "seed": seed,
                            "budget": budget}
                    for arm, exclude in (("static", True), ("static-all", False)):
                        v, s = static_arm(bank, scores, budget, seed, exclude)
                        rows += _score_rows(v, s, truth, {**base, "arm": arm})
                    for criterion in criteria:
                        for fraction in core_fractions:
                            core_size = max(1, int(round(fraction * budget)))
                            if core_size >= budget:
                                continue
                            tag = "adaptive" if criterion == "d-optimal" else "adaptive-acc"
                            arm = f"{tag}-c{fraction:g}"
                            v, s, _ = adaptive_arm(bank, scores, budget, core_size, batch, seed,
                                                   criterion)
                            rows += _score_rows(v, s, truth, {**base, "arm": arm,
                                                              "core": core_size})
                    done = [r for r in rows if r["budget"] == budget and r["seed"] == seed
                            and r["split"] == split and r["split_seed"] == split_seed]
                    best = min(done, key=lambda r: r["mae_pp"])
                    print(f"  seed {seed} B = {budget}: best {best['arm']} {best['estimator']} "
                          f"{best['mae_pp']:.2f} pp ({time.perf_counter() - started:.0f} s)",
                          flush=True)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    summary = frame.groupby(["split", "budget", "arm", "estimator"], sort=False).agg(
        mae_pp=("mae_pp", "mean"), mae_sd=("mae_pp", "std"), kendall=("kendall", "mean"),
        stderr_pp=("stderr_pp", "mean"), coverage95=("coverage95", "mean"),
        runs=("mae_pp", "size"), n_test=("n_test", "first")).reset_index()
    summary.to_csv(out / "summary.csv", index=False)
    info["seconds"] = round(time.perf_counter() - started, 1)
    info["machine"] = (f"{platform.machine()}, Python {platform.python_version()}, "
                       "2-core VM shared with other engineers' jobs, OMP_NUM_THREADS=1")
    (out / "info.json").write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    (out / "report.md").write_text(report(summary, info), encoding="utf-8")
    print(report(summary, info))


def headline(summary: pd.DataFrame) -> str:
    """Per split and budget: the best static and the best adaptive (arm, estimator, MAE),
    and the default estimator gmp-IRT static vs its best adaptive arm."""
    lines = ["| split | items | best static | best adaptive | gmp-irt static | "
             "gmp-irt best adaptive |", "|---|---|---|---|---|---|"]
    for (split, budget), group in summary.groupby(["split", "budget"], sort=False):
        static = group[group["arm"] == "static"]
        adaptive = group[group["arm"].str.startswith("adaptive")]
        best_s = static.sort_values("mae_pp").iloc[0]
        best_a = adaptive.sort_values("mae_pp").iloc[0]
        gmp_s = static[static["estimator"] == "gmp-irt"].iloc[0]
        gmp_a = adaptive[adaptive["estimator"] == "gmp-irt"].sort_values("mae_pp").iloc[0]
        lines.append(f"| {split} | {budget} | {best_s['mae_pp']:.2f} ({best_s['estimator']}) | "
                     f"{best_a['mae_pp']:.2f} ({best_a['estimator']}, {best_a['arm']}) | "
                     f"{gmp_s['mae_pp']:.2f} | {gmp_a['mae_pp']:.2f} ({gmp_a['arm']}) |")
    return "\n".join(lines) + "\n"


def report(summary: pd.DataFrame, info: dict) -> str:
    """MAE (pp) tables: estimator × arm per split and budget."""
    parts = [f"Population: {info['n_models']} models × {info['n_items']} items; "
             f"{info['seconds']} s.\n", headline(summary)]
    for c in info["calibrations"]:
        f = c["flagged"]
        parts.append(f"- {c['split']} seed {c['seed']}: D = {c['dims']}, {c['n_train']} "
                     f"train / {c['n_test']} test models, {f['count']} items flagged "
                     f"({f['negative']} negative, {f['near-zero']} near-zero), "
                     f"{f['constant']} constant (not judged)")
    for (split, budget), group in summary.groupby(["split", "budget"], sort=False):
        table = group.pivot(index="estimator", columns="arm", values="mae_pp")
        table = table[list(dict.fromkeys(group["arm"]))].reindex(list(ESTIMATORS))
        parts.append(f"\n### {split}, {budget} items: MAE (pp)\n")
        parts.append("| estimator | " + " | ".join(table.columns) + " |")
        parts.append("|---|" + "---|" * len(table.columns))
        for name, row in table.iterrows():
            best = row.min()
            cells = [f"**{v:.2f}**" if v == best else f"{v:.2f}" for v in row]
            parts.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("responses", nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budgets", default="10,20,50")
    parser.add_argument("--core-fractions", default="0.5")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--splits", default="random,strongest")
    parser.add_argument("--criteria", default="d-optimal,accuracy")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite OUT/report.md from OUT/summary.csv and info.json")
    args = parser.parse_args()
    if args.report_only:
        info = json.loads((args.out / "info.json").read_text(encoding="utf-8"))
        summary = pd.read_csv(args.out / "summary.csv")
        (args.out / "report.md").write_text(report(summary, info), encoding="utf-8")
        return
    run(args.responses, args.out, [int(x) for x in args.budgets.split(",")],
        [float(x) for x in args.core_fractions.split(",")], args.batch,
        [int(x) for x in args.seeds.split(",")], args.splits.split(","),
        args.criteria.split(","))


if __name__ == "__main__":
    main()

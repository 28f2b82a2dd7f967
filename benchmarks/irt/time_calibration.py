"""Calibration time for 300 models × 3000 items, and how closely the two engines agree.

Both engines fit the same real response matrix (the scikit-learn population of
build_sklearn_population.py). Agreement is measured on what the estimators use: the
predicted probabilities P(model answers item) and each model's predicted accuracy.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/irt/time_calibration.py \
        benchmarks/irt/data/sklearn_population.csv --out benchmarks/irt/calibration_time.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from irt import ResponseMatrix, calibrate, load_responses
from irt.calibrate import fit_item_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("responses", type=Path)
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--dims", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/irt/calibration_time.md"))
    args = parser.parse_args()
    matrix = load_responses(args.responses)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(matrix.n_models, size=min(args.models, matrix.n_models),
                              replace=False))
    cols = np.sort(rng.choice(matrix.n_items, size=min(args.items, matrix.n_items),
                              replace=False))
    scores = matrix.select_models(rows).select_items(cols).scores
    results = []
    for dims in args.dims:
        fits = {}
        for engine in ("scipy", "py-irt"):
            started, cpu = time.perf_counter(), time.process_time()
            params, theta = fit_item_params(scores, dims, engine, epochs=args.epochs, seed=0)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            fits[engine] = params.prob(theta)
            results.append({"dims": dims, "engine": engine, "seconds": round(seconds, 1),
                            "cpu_seconds": round(cpu, 1),
                            "epochs": args.epochs if engine == "py-irt" else None})
            print(results[-1], flush=True)
        p_scipy, p_pyirt = fits["scipy"], fits["py-irt"]
        acc = np.nanmean(scores, axis=1)
        results.append({
            "dims": dims, "engine": "agreement",
            "mean_abs_dP": round(float(np.mean(np.abs(p_scipy - p_pyirt))), 4),
            "corr_item_mean_P": round(float(np.corrcoef(p_scipy.mean(0), p_pyirt.mean(0))[0, 1]),
                                      4),
            "model_acc_mae_pp_scipy": round(100 * float(np.mean(np.abs(p_scipy.mean(1) - acc))),
                                            2),
            "model_acc_mae_pp_pyirt": round(100 * float(np.mean(np.abs(p_pyirt.mean(1) - acc))),
                                            2),
            "model_acc_diff_pp": round(100 * float(np.mean(np.abs(p_scipy.mean(1)
                                                                  - p_pyirt.mean(1)))), 2),
        })
        print(results[-1], flush=True)
    # the whole `merge3 irt calibrate` (scipy): D chosen among 2, 5, 10, 15 on held-out models
    sub = matrix.select_models(rows).select_items(cols)
    started, cpu = time.perf_counter(), time.process_time()
    bank = calibrate(ResponseMatrix(scores, sub.model_ids, sub.item_ids, sub.item_tasks))
    results.append({"dims": f"auto → {bank.dims}", "engine": "scipy (full calibrate)",
                    "seconds": round(time.perf_counter() - started, 1),
                    "cpu_seconds": round(time.process_time() - cpu, 1), "epochs": None})
    print(results[-1], flush=True)
    machine = (f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
               f"Python {platform.python_version()}, load average at end "
               f"{os.getloadavg()[0]:.1f} (CPU shared with other jobs)")
    lines = [f"# Calibration time: {scores.shape[0]} models × {scores.shape[1]} items\n",
             f"Command: `OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python "
             f"benchmarks/irt/time_calibration.py {args.responses} --out {args.out}`\n",
             f"Machine: {machine}. py-irt runs with torch.set_num_threads(1).\n",
             "Wall seconds depend on the other jobs on the machine; CPU seconds are this "
             "process's own (one thread).\n",
             "| D | engine | wall seconds | CPU seconds | epochs |", "|---|---|---|---|---|"]
    lines += [f"| {r['dims']} | {r['engine']} | {r['seconds']} | {r['cpu_seconds']} | "
              f"{r['epochs'] or '-'} |"
              for r in results if r["engine"] != "agreement"]
    lines += ["", "## Engine agreement (same data)", "",
              "| D | mean abs ΔP | corr of item mean P | model-accuracy MAE pp scipy | "
              "py-irt | scipy vs py-irt pp |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['dims']} | {r['mean_abs_dP']} | {r['corr_item_mean_P']} | "
              f"{r['model_acc_mae_pp_scipy']} | {r['model_acc_mae_pp_pyirt']} | "
              f"{r['model_acc_diff_pp']} |" for r in results if r["engine"] == "agreement"]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()

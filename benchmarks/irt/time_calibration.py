"""Engine-level calibration time for 300 models × 3000 items, and how the engines agree.

Every engine fits the same real response matrix (the scikit-learn population of
build_sklearn_population.py). Agreement is measured on what the estimators use: the
predicted probabilities P(model answers item) and each model's predicted accuracy.
``scipy-lbfgsb`` is the joint-MAP engine as it was before irt.lbfgs (scipy's L-BFGS-B,
BLAS threads as they come), for the before/after comparison. Default threads: the target is
the 2-core machine as it comes (py-irt sets one torch thread itself).

    nice -n 10 .venv/bin/python benchmarks/irt/time_calibration.py \
        benchmarks/irt/data/sklearn_population.csv --engines scipy,scipy-lbfgsb
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
from irt.engine_scipy import fit_joint_map


def _fit(scores: np.ndarray, dims: int, engine: str, epochs: int):  # noqa: ANN202
    if engine == "scipy-lbfgsb":  # the engine before irt.lbfgs, threads untouched
        fit = fit_joint_map(scores, dims, optimizer="scipy-lbfgsb", blas_threads=None)
        return fit.params, fit.theta
    return fit_item_params(scores, dims, engine, epochs=epochs, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("responses", type=Path)
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--dims", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--engines", type=lambda s: s.split(","), default=["scipy", "py-irt"],
                        help="comma-separated: scipy, scipy-lbfgsb, py-irt")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/irt/calibration_time_engines.md"))
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
        for engine in args.engines:
            started, cpu = time.perf_counter(), time.process_time()
            params, theta = _fit(scores, dims, engine, args.epochs)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            fits[engine] = params.prob(theta)
            results.append({"dims": dims, "engine": engine, "seconds": round(seconds, 1),
                            "cpu_seconds": round(cpu, 1),
                            "epochs": args.epochs if engine == "py-irt" else None})
            print(results[-1], flush=True)
        if "scipy" not in fits or "py-irt" not in fits:
            continue
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
             f"Command: `nice -n 10 .venv/bin/python benchmarks/irt/time_calibration.py "
             f"{args.responses} --engines {','.join(args.engines)}`\n",
             f"Machine: {machine}. py-irt runs with torch.set_num_threads(1); the scipy "
             "engine limits BLAS to one thread during a fit; scipy-lbfgsb leaves it as it "
             "comes (2).\n",
             "Wall seconds depend on the other jobs on the machine; CPU seconds are this "
             "process's own (all its threads).\n",
             "| D | engine | wall seconds | CPU seconds | epochs |", "|---|---|---|---|---|"]
    lines += [f"| {r['dims']} | {r['engine']} | {r['seconds']} | {r['cpu_seconds']} | "
              f"{r['epochs'] or '-'} |"
              for r in results if r["engine"] != "agreement"]
    if not any(r["engine"] == "agreement" for r in results):
        lines = lines + [""]
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1),
                                                 encoding="utf-8")
        return
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

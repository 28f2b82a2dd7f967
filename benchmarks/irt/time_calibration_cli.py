"""Wall time of `merge3 irt calibrate RESPONSES --out DIR` (default options), before/after.

The CLI alone, as a user runs it: a fresh process per call (imports, loading, the
``--dims auto`` search over D = 2, 5, 10, 15 on 80% of the models, held-out errors, the final
warm-started fit, saving). "before" runs the ``irt`` package of an earlier commit (extracted
with ``git archive`` and put first on PYTHONPATH; everything else is this checkout), "after"
this checkout; the two alternate, so both see the same load. Default threads (no
OMP_NUM_THREADS): the target is the 2-core machine as it comes.

Inputs, 150 models × 3000 items each (written to benchmarks/irt/data/, git-ignored):
``sklearn``: 150 random models × 3000 random items of the scikit-learn population
(build_sklearn_population.py); ``mirt2``: a synthetic σ(α·θ − β) population with D = 2
(θ ~ N(0, I); α₁ ~ LogNormal(0, 0.4), α₂ ~ N(0, 0.6²); β ~ N(0, 1.5²): accuracies ~20–80%).

    nice -n 10 .venv/bin/python benchmarks/irt/time_calibration_cli.py \\
        benchmarks/irt/data/sklearn_population.csv --before caedbd6 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "benchmarks" / "irt" / "data"


def sklearn_subset(population: Path, n_models: int = 150, n_items: int = 3000,
                   seed: int = 0) -> Path:
    """150 random models × 3000 random items of the scikit-learn population, as a CSV."""
    out = DATA / f"sklearn_{n_models}x{n_items}.csv"
    if out.exists():
        return out
    frame = pd.read_csv(population)
    key = frame["task"] + "/" + frame["item"].astype(str)
    rng = np.random.default_rng(seed)
    models = rng.choice(frame["model"].unique(), n_models, replace=False)
    items = rng.choice(key.unique(), n_items, replace=False)
    frame[frame["model"].isin(models) & key.isin(items)].to_csv(out, index=False)
    return out


def synthetic_mirt2(n_models: int = 150, n_items: int = 3000, seed: int = 0) -> Path:
    """Binary responses drawn from a 2-D σ(α·θ − β) with the parameters in the docstring."""
    out = DATA / f"mirt2_{n_models}x{n_items}.csv"
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((n_models, 2))
    alpha = np.column_stack([rng.lognormal(0.0, 0.4, n_items), rng.normal(0.0, 0.6, n_items)])
    beta = rng.normal(0.0, 1.5, n_items)
    p = 1.0 / (1.0 + np.exp(-(theta @ alpha.T - beta)))
    y = (rng.random(p.shape) < p).astype(int)
    tasks = [f"task{i % 3}" for i in range(n_items)]
    models, items = np.meshgrid(np.arange(n_models), np.arange(n_items), indexing="ij")
    pd.DataFrame({"model": [f"m{m:03d}" for m in models.ravel()],
                  "item": items.ravel(), "score": y.ravel(),
                  "task": np.array(tasks)[items.ravel()]}).to_csv(out, index=False)
    return out


def extract_irt(commit: str, into: Path) -> Path:
    """The ``irt`` package as of ``commit``, unpacked under ``into``."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "irt"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as archive:
        archive.extractall(into, filter="data")
    return into


def run_cli(responses: Path, out: Path, pythonpath: Path | None) -> dict[str, object]:
    """One `merge3 irt calibrate` call: wall, CPU of the child, load, the bank's metadata."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "merge3"), "irt", "calibrate",
                           str(responses), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"merge3 irt calibrate failed:\n{done.stderr[-2000:]}")
    meta = json.loads((out / "bank.json").read_text())["metadata"]
    return {"wall_s": round(wall, 1),
            "cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime
                           - cpu_before.ru_utime - cpu_before.ru_stime, 1),
            "load_before": round(load_before, 1), "load_after": round(os.getloadavg()[0], 1),
            "calibrate_s": meta["seconds"], "dims": meta["dims"],
            "selection_mae_pp": {d: round(e, 3) for d, e in
                                 meta["dimension_selection_mae_pp"].items()},
            "timing": meta.get("timing")}


def startup_seconds(pythonpath: Path | None) -> float:
    """`merge3 irt calibrate --help`: the imports every call pays before any work."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "merge3"), "irt", "calibrate", "--help"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    return round(time.perf_counter() - started, 1)


def _table(rows: list[dict[str, object]]) -> list[str]:
    lines = ["| input | version | wall s | CPU s | load (1 min) before → after | "
             "calibrate() s | D chosen | held-out p-IRT MAE pp by D |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        errors = ", ".join(f"{d}: {e:.2f}" for d, e in r["selection_mae_pp"].items())
        lines.append(f"| {r['input']} | {r['version']} | {r['wall_s']} | {r['cpu_s']} | "
                     f"{r['load_before']} → {r['load_after']} | {r['calibrate_s']} | "
                     f"{r['dims']} | {errors} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("population", type=Path, help="sklearn_population.csv")
    parser.add_argument("--before", required=True, help="commit whose irt package is 'before'")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "irt" / "calibration_time_cli")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    inputs = {"sklearn": sklearn_subset(args.population), "mirt2": synthetic_mirt2()}
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        before = extract_irt(args.before, Path(tmp) / "before")
        versions = {f"before ({args.before})": before, "after": None}
        startup = {name: startup_seconds(path) for name, path in versions.items()}
        for repeat in range(args.repeats):
            for name, path in inputs.items():
                for version, pythonpath in versions.items():
                    row = run_cli(path, Path(tmp) / f"bank-{len(rows)}", pythonpath)
                    rows.append({"input": name, "version": version, "repeat": repeat, **row})
                    print(json.dumps(rows[-1]), flush=True)
    machine = (f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
               f"Python {platform.python_version()}, CPU shared with other engineers' jobs "
               "(load average in the table)")
    population = (args.population.relative_to(ROOT) if args.population.is_absolute()
                  else args.population)
    command = (f"nice -n 10 .venv/bin/python benchmarks/irt/time_calibration_cli.py "
               f"{population} --before {args.before} --repeats {args.repeats}")
    lines = ["# `merge3 irt calibrate` wall time, 150 models × 3000 items, before/after\n",
             f"Command: `{command}`\n", f"Machine: {machine}.\n",
             "Each call: `merge3 irt calibrate RESPONSES --out DIR` with default options "
             "(`--dims auto`, engine scipy), default threads. Startup (`merge3 irt calibrate "
             "--help`): " + ", ".join(f"{v}: {s} s" for v, s in startup.items()) + ".\n",
             *_table(rows), ""]
    after = [r for r in rows if r["version"] == "after" and r["timing"]]
    if after:
        lines += ["## Where the time goes (after, first run per input)", "",
                  "| input | stage | D | models | seconds |", "|---|---|---|---|---|"]
        for name in inputs:
            first = next(r for r in after if r["input"] == name)
            for t in first["timing"]:
                lines.append(f"| {name} | {t['stage']} | {t['dims']} | {t['models']} | "
                             f"{t['seconds']} |")
            lines.append(f"| {name} | startup, loading, saving (wall − calibrate()) | | | "
                         f"{first['wall_s'] - first['calibrate_s']:.1f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"startup_s": startup, "runs": rows},
                                                        indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()

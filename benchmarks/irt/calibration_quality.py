"""Did the faster calibration cost fidelity? `merge3 irt validate` before and after.

The same validation (k = 50, k-means-on-correctness anchors, seeds 0–2, every estimator,
random / strongest / recalibration splits, ``--dims auto``) run with the ``irt`` package of
an earlier commit ("before", extracted by git archive onto PYTHONPATH, as in
time_calibration_cli.py) and with this checkout ("after"), on the scikit-learn population
and the demo zoo's responses. Writes calibration_quality.{md,json}: MAE (pp) per split ×
estimator, before vs after, with each run's wall time.

    nice -n 10 .venv/bin/python benchmarks/irt/calibration_quality.py --before caedbd6 \\
        --population sklearn=benchmarks/irt/data/sklearn_population.csv \\
        --population zoo=$HOME/.cache/merge3/minilm/demo/responses
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_calibration_cli import ROOT, extract_irt  # noqa: E402


def validate(responses: str, out: Path, pythonpath: Path | None) -> dict[str, object]:
    """One `merge3 irt validate` at k = 50; its summary rows and wall time."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "merge3"), "irt", "validate",
                    os.path.expanduser(responses), "--out", str(out), "--ks", "50",
                    "--selectors", "kmeans-correctness", "--seeds", "0,1,2"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    with (out / "summary.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["k"] == "50"]
    return {"wall_s": round(wall, 1), "load_after": round(os.getloadavg()[0], 1),
            "mae_pp": {f"{r['split']}|{r['estimator']}": float(r["mae_pp"]) for r in rows}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True)
    parser.add_argument("--population", action="append", required=True,
                        metavar="NAME=PATH")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "irt" / "calibration_quality")
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before = extract_irt(args.before, Path(tmp) / "before")
        for spec in args.population:
            name, _, path = spec.partition("=")
            for version, pythonpath in (("before", before), ("after", None)):
                results[f"{name}|{version}"] = validate(path, Path(tmp) / f"{name}-{version}",
                                                        pythonpath)
                print(name, version, json.dumps(results[f"{name}|{version}"]), flush=True)
    lines = ["# Held-out fidelity before/after the calibration speed-up\n",
             f"`merge3 irt validate` at k = 50 (kmeans-correctness anchors, seeds 0–2, "
             f"`--dims auto`); before = the irt package of {args.before}, after = this "
             "checkout. MAE in pp. Command: `nice -n 10 .venv/bin/python "
             "benchmarks/irt/calibration_quality.py --before "
             f"{args.before} " + " ".join(f"--population {p}" for p in args.population)
             + "`\n"]
    for spec in args.population:
        name = spec.partition("=")[0]
        b, a = results[f"{name}|before"], results[f"{name}|after"]
        lines += [f"## {name} (validate wall: before {b['wall_s']} s, after {a['wall_s']} s; "
                  f"load after {b['load_after']} / {a['load_after']})", "",
                  "| split | estimator | before | after | after − before |",
                  "|---|---|---|---|---|"]
        for key, before_mae in b["mae_pp"].items():
            split, estimator = key.split("|")
            after_mae = a["mae_pp"][key]
            lines.append(f"| {split} | {estimator} | {before_mae:.2f} | {after_mae:.2f} | "
                         f"{after_mae - before_mae:+.2f} |")
        lines.append("")
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
